//! [`Absences`]: the ids a quick lookup found not committed, remembered for as long as the
//! kernel reports nothing new in `objects/`, so that a server asked again and again for ids it
//! does not have makes no path lookup for them.
//!
//! A commit, in this process or any other, is one `rename` into `objects/` (see `layout.rs`);
//! the kernel queues the watch's `IN_MOVED_TO` event for the new name before that `rename`
//! returns. Every lookup first reads the queue to its end (one non-blocking `read` when it is
//! empty) and forgets each id an event names, then answers from the set. So an id answered
//! absent had no entry in `objects/` at some moment after the lookup began, exactly as if the
//! lookup had been a `stat`: a commit that returned before the lookup began is always seen.
//!
//! The rules that keep it so:
//! - An id is remembered only when `objects/<hex>` itself is missing (looked up relative to the
//!   watched directory), and only if no event was read between the read of the queue that
//!   preceded that lookup and the insertion (`epoch`): an event read by another thread in
//!   between may have been about this very id.
//! - A full queue (`IN_Q_OVERFLOW`: events were lost) forgets every id.
//! - The root is watched too. When the path may no longer lead to the watched `objects/` (an
//!   event of the root naming `objects`, or the root itself moved or deleted), when either
//!   watch ends (`IN_IGNORED`, `IN_UNMOUNT`), on an error reading the queue, or when
//!   [`Cache::check_usable`](crate::Cache::check_usable) finds that the path leads elsewhere
//!   (a directory above the root moved), the set is dropped for good and every lookup goes to
//!   the path as before. (Deleting `objects/` itself queues no `IN_DELETE_SELF` while the
//!   descriptor the lookups use is open: the root's `IN_DELETE` is the event that tells.)
//! - At most [`CAPACITY`] ids; a lookup that would add one more forgets all first (a flood of
//!   distinct missing ids costs what it cost without the set, plus the `read`).
//!
//! inotify sees only what this machine's kernel does, so the set is kept only on file systems
//! whose every change goes through it ([`linux::local`]: ext2-4, XFS, Btrfs, F2FS, ZFS,
//! bcachefs, tmpfs, ramfs, overlayfs); on NFS, SMB, FUSE, 9p, Ceph and the rest, where another
//! machine may commit, every lookup goes to the path.
//!
//! The watch is set up on the first quick lookup that needs it, so a process that never serves
//! (the command line, most library users) never holds an inotify descriptor. Elsewhere than on
//! Linux there is no set and every lookup goes to the path.

use std::{fs, io, path::Path};

use crate::{ArtifactId, layout::Layout};

/// The most ids remembered at once (about 80 bytes each).
pub(crate) const CAPACITY: usize = 4096;

/// Remembered absences of one cache handle (shared by its clones); see the module's docs.
#[derive(Debug, Default)]
pub(crate) struct Absences {
    #[cfg(target_os = "linux")]
    watch: std::sync::OnceLock<Option<linux::Watch>>,
}

impl Absences {
    /// Whether `id` is not committed: `objects/<hex>` names nothing (remembered, or looked up
    /// relative to the watched directory), or without a watch `objects/<hex>/meta` does.
    /// `false` when it is there or when telling failed (the caller takes its slow path).
    pub(crate) fn absent(&self, layout: &Layout, id: &ArtifactId) -> bool {
        #[cfg(target_os = "linux")]
        if let Some(watch) = self.watch(layout)
            && let Some(absent) = watch.absent(id)
        {
            return absent;
        }
        absent_by_path(layout, id)
    }

    /// Stops remembering for good if the root's `objects/` is no longer the watched directory
    /// (`objects` is the metadata of what the path names now).
    pub(crate) fn check_dir(&self, objects: &fs::Metadata) {
        #[cfg(target_os = "linux")]
        if let Some(Some(watch)) = self.watch.get() {
            watch.check_dir(objects);
        }
        #[cfg(not(target_os = "linux"))]
        let _ = objects;
    }

    /// How many ids are remembered now (for tests and the docs' claims).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        #[cfg(target_os = "linux")]
        if let Some(Some(watch)) = self.watch.get() {
            return watch.len();
        }
        0
    }

    #[cfg(target_os = "linux")]
    fn watch(&self, layout: &Layout) -> Option<&linux::Watch> {
        self.watch
            .get_or_init(|| match linux::Watch::new(&layout.objects) {
                Ok(watch) => Some(watch),
                Err(err) => {
                    tracing::debug!(
                        objects = %layout.objects.display(),
                        error = %err,
                        "cannot watch the objects directory; every miss is looked up"
                    );
                    None
                }
            })
            .as_ref()
    }
}

/// The lookup without a set: a commit makes the metadata path appear and a removal makes it
/// disappear, each in one rename, so its absence means "not committed".
fn absent_by_path(layout: &Layout, id: &ArtifactId) -> bool {
    layout.with_meta(id, |meta: &Path| {
        matches!(fs::symlink_metadata(meta), Err(err) if err.kind() == io::ErrorKind::NotFound)
    })
}

#[cfg(target_os = "linux")]
mod linux {
    use std::{
        collections::HashSet,
        ffi::CStr,
        fs, io,
        mem::MaybeUninit,
        os::{fd::OwnedFd, unix::fs::MetadataExt},
        path::Path,
        sync::{Mutex, MutexGuard},
    };

    use rustix::{
        fs::{AtFlags, Mode, OFlags, inotify},
        io::Errno,
    };

    use super::CAPACITY;
    use crate::{ArtifactId, id::MAX_ID_BYTES};

    /// The watch on `objects/` and its root, the directory it watches, and the set.
    #[derive(Debug)]
    pub(super) struct Watch {
        /// `objects/`, opened when the watch was set up: lookups are relative to it, so they
        /// ask the very directory whose events are read.
        dir: OwnedFd,
        /// Its device and inode, to tell whether the root's path still leads to it.
        dev_ino: (u64, u64),
        /// The inotify instance, read only while `state` is locked.
        inotify: OwnedFd,
        /// The root's watch (`objects/`'s is the other one).
        root_wd: i32,
        state: Mutex<State>,
    }

    #[derive(Debug)]
    struct State {
        ids: HashSet<ArtifactId>,
        /// Counts the events read (and the times the set was dropped).
        epoch: u64,
        /// False once the set is dropped for good.
        live: bool,
    }

    /// Whether a file system of type `kind` (`statfs`'s `f_type`) changes only through this
    /// machine's kernel, so that inotify reports every change: the local disk file systems
    /// and the in-memory ones. Not network or FUSE file systems, nor any this list does not
    /// know.
    pub(super) fn local(kind: rustix::fs::FsWord) -> bool {
        const LOCAL: [u64; 9] = [
            0xEF53,      // ext2, ext3, ext4
            0x5846_5342, // xfs
            0x9123_683E, // btrfs
            0xF2F5_2010, // f2fs
            0x2FC1_2FC1, // zfs
            0xCA45_1A4E, // bcachefs
            0x0102_1994, // tmpfs
            0x8584_58F6, // ramfs
            0x794C_7630, // overlayfs
        ];
        LOCAL.contains(&(kind as u64 & 0xFFFF_FFFF))
    }

    /// What the queue and the set say of an id.
    pub(super) enum Known {
        Absent,
        /// Not in the set; an insertion must find this epoch unchanged.
        Unknown(u64),
        /// No set any more.
        Off,
    }

    impl Watch {
        pub(super) fn new(objects: &Path) -> io::Result<Watch> {
            let inotify =
                inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)?;
            let dir = rustix::fs::open(
                objects,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let kind = rustix::fs::fstatfs(&dir)?.f_type;
            if !local(kind) {
                return Err(io::Error::other(format!(
                    "file system type {kind:#x} may change without this kernel knowing"
                )));
            }
            let flags = inotify::WatchFlags::CREATE
                | inotify::WatchFlags::MOVED_TO
                | inotify::WatchFlags::DELETE_SELF
                | inotify::WatchFlags::MOVE_SELF
                | inotify::WatchFlags::ONLYDIR;
            inotify::add_watch(&inotify, objects, flags)?;
            let root =
                objects.parent().ok_or_else(|| io::Error::other("objects/ has no parent"))?;
            let root_flags = inotify::WatchFlags::CREATE
                | inotify::WatchFlags::DELETE
                | inotify::WatchFlags::MOVED_FROM
                | inotify::WatchFlags::MOVED_TO
                | inotify::WatchFlags::DELETE_SELF
                | inotify::WatchFlags::MOVE_SELF
                | inotify::WatchFlags::ONLYDIR;
            let root_wd = inotify::add_watch(&inotify, root, root_flags)?;
            // Opened before the watches were added and still what the path names after: they
            // are on the opened directory and its root.
            let opened = rustix::fs::fstat(&dir)?;
            let dev_ino = (opened.st_dev, opened.st_ino);
            let now = fs::metadata(objects)?;
            if (now.dev(), now.ino()) != dev_ino {
                return Err(io::Error::other("objects/ was replaced while being watched"));
            }
            let state = State { ids: HashSet::new(), epoch: 0, live: true };
            Ok(Watch { dir, dev_ino, inotify, root_wd, state: Mutex::new(state) })
        }

        /// `Some(absent)` from the set or a lookup relative to the watched directory; `None`
        /// when there is no set any more.
        pub(super) fn absent(&self, id: &ArtifactId) -> Option<bool> {
            let epoch = match self.known(id) {
                Known::Absent => return Some(true),
                Known::Off => return None,
                Known::Unknown(epoch) => epoch,
            };
            let mut hex = [0; 2 * MAX_ID_BYTES];
            match rustix::fs::statat(&self.dir, id.hex(&mut hex), AtFlags::SYMLINK_NOFOLLOW) {
                Err(Errno::NOENT) => {
                    self.remember(id, epoch);
                    Some(true)
                }
                // There (committed, or in a state the slow path sorts out), or unknown.
                _ => Some(false),
            }
        }

        pub(super) fn known(&self, id: &ArtifactId) -> Known {
            let mut st = self.state();
            self.drain(&mut st);
            if !st.live {
                Known::Off
            } else if st.ids.contains(id) {
                Known::Absent
            } else {
                Known::Unknown(st.epoch)
            }
        }

        pub(super) fn remember(&self, id: &ArtifactId, epoch: u64) {
            let mut st = self.state();
            if !st.live || st.epoch != epoch {
                return;
            }
            if st.ids.len() >= CAPACITY {
                st.ids.clear();
            }
            st.ids.insert(*id);
        }

        pub(super) fn check_dir(&self, objects: &fs::Metadata) {
            if (objects.dev(), objects.ino()) != self.dev_ino {
                let mut st = self.state();
                if st.live {
                    tracing::warn!(
                        "the cache's objects/ directory was replaced; misses are looked up again"
                    );
                    st.drop_all();
                }
            }
        }

        #[cfg(test)]
        pub(super) fn len(&self) -> usize {
            self.state().ids.len()
        }

        fn state(&self) -> MutexGuard<'_, State> {
            self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
        }

        /// Reads every queued event and applies it to `st`, the locked state.
        fn drain(&self, st: &mut State) {
            if !st.live {
                return;
            }
            let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
            let mut reader = inotify::Reader::new(&self.inotify, &mut buf);
            while st.live {
                match reader.next() {
                    Ok(event) => {
                        st.apply(event.wd() == self.root_wd, event.events(), event.file_name())
                    }
                    Err(Errno::AGAIN) => break,
                    Err(Errno::INTR) => {}
                    Err(err) => {
                        tracing::warn!(
                            error = %err,
                            "cannot read the objects/ watch; misses are looked up again"
                        );
                        st.drop_all();
                    }
                }
            }
        }
    }

    impl State {
        /// One event: forget the id it names; forget all if events were lost; stop for good if
        /// the path may no longer lead to the watched directory or a watch ended.
        fn apply(&mut self, of_root: bool, events: inotify::ReadFlags, name: Option<&CStr>) {
            use inotify::ReadFlags as F;
            self.epoch += 1;
            let ended = F::IGNORED | F::DELETE_SELF | F::MOVE_SELF | F::UNMOUNT;
            if events.intersects(ended) || (of_root && name == Some(c"objects")) {
                self.drop_all();
            } else if of_root {
                // Another name in the root: nothing to forget.
            } else if events.contains(F::QUEUE_OVERFLOW) {
                self.ids.clear();
            } else if let Some(id) = name.and_then(|name| name.to_str().ok()?.parse().ok()) {
                self.ids.remove(&id);
            }
        }

        fn drop_all(&mut self) {
            self.live = false;
            self.epoch += 1;
            self.ids = HashSet::new();
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::{
        sync::{
            Arc,
            atomic::{AtomicU64, Ordering},
        },
        thread,
    };

    use super::{CAPACITY, linux::Known};
    use crate::{ArtifactId, Cache, Quick, QuickStat};

    fn id(n: u64) -> ArtifactId {
        format!("{n:016x}").parse().unwrap()
    }

    fn commit(cache: &Cache, id: &ArtifactId) {
        let writer = cache.create(id).unwrap();
        std::fs::write(writer.path().join("f"), id.to_string()).unwrap();
        writer.commit().unwrap();
    }

    fn absent(cache: &Cache, id: &ArtifactId) -> bool {
        matches!(cache.get_quick(id), Quick::Absent)
    }

    /// A directory on tmpfs where there is one (the set needs a local file system; `/tmp`
    /// may be anything).
    fn tempdir() -> tempfile::TempDir {
        tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir()).unwrap()
    }

    /// Two handles on one root: each has its own table and set, as two processes would.
    fn two_handles() -> (tempfile::TempDir, Cache, Cache) {
        let dir = tempdir();
        let root = dir.path().join("c");
        let reader = Cache::open(&root).unwrap();
        let writer = Cache::open(&root).unwrap();
        (dir, reader, writer)
    }

    #[test]
    fn only_local_file_systems_are_watched() {
        use super::linux::local;
        for (kind, name) in [(0xEF53, "ext4"), (0x0102_1994, "tmpfs"), (0xF2F5_2010, "f2fs")] {
            assert!(local(kind), "{name}");
        }
        let remote = [(0x6969, "nfs"), (0xFF53_4D42, "cifs"), (0xFE53_4D42, "smb2")];
        let other = [(0x6573_5546, "fuse"), (0x0102_1997, "9p"), (0x00C3_6400, "ceph"), (0, "?")];
        for (kind, name) in remote.into_iter().chain(other) {
            assert!(!local(kind), "{name}");
        }
        // Where these tests run, the set is kept: the tests below need it.
        let dir = tempdir();
        let kind = rustix::fs::statfs(dir.path()).unwrap().f_type;
        assert!(local(kind), "{} is on file system {kind:#x}", dir.path().display());
    }

    #[test]
    fn a_miss_is_remembered_until_a_commit_names_it() {
        let (_dir, reader, writer) = two_handles();
        let (one, two) = (id(1), id(2));
        assert!(absent(&reader, &one));
        assert!(absent(&reader, &two));
        assert_eq!(reader.inner.absences.len(), 2);
        assert!(absent(&reader, &one), "asked again, from the set");
        assert!(matches!(reader.stat_quick(&one), QuickStat::Absent));
        commit(&writer, &one);
        // The commit's event is read before the set is asked.
        assert!(!absent(&reader, &one));
        assert!(!matches!(reader.stat_quick(&one), QuickStat::Absent));
        assert_eq!(reader.inner.absences.len(), 1, "the other id stays remembered");
        assert!(absent(&reader, &two));
        assert_eq!(reader.get(&one).unwrap().metadata().size, 16);
        // Removed and committed again, through the reader's own handle: never a stale miss.
        writer.remove(&one).unwrap();
        assert!(reader.get(&one).unwrap_err().is_not_found());
        commit(&reader, &one);
        assert!(!absent(&reader, &one));
    }

    #[test]
    fn no_miss_survives_a_commit_that_returned() {
        let (_dir, reader, writer) = two_handles();
        let (reader, writer) = (Arc::new(reader), Arc::new(writer));
        const IDS: u64 = 300;
        // The number of ids committed so far: published after each commit returns.
        let committed = Arc::new(AtomicU64::new(0));
        let askers: Vec<_> = (0..2)
            .map(|t| {
                let (reader, committed) = (reader.clone(), committed.clone());
                thread::spawn(move || {
                    let mut asked = 0u64;
                    loop {
                        let done = committed.load(Ordering::Acquire);
                        // Every id committed before this lookup began must be seen...
                        for n in done.saturating_sub(3)..done {
                            assert!(!absent(&reader, &id(n)), "id {n} committed, said absent");
                        }
                        // ...and the ones not yet committed are asked, to be remembered.
                        for n in done..(done + 4).min(IDS) {
                            let _ = absent(&reader, &id(n));
                        }
                        asked += 1;
                        if done == IDS {
                            return asked + t;
                        }
                    }
                })
            })
            .collect();
        for n in 0..IDS {
            commit(&writer, &id(n));
            committed.store(n + 1, Ordering::Release);
        }
        for asker in askers {
            assert!(asker.join().unwrap() > 0);
        }
        for n in 0..IDS {
            assert!(!absent(&reader, &id(n)), "id {n}");
        }
    }

    #[test]
    fn a_miss_raced_by_a_commit_read_elsewhere_is_not_remembered() {
        let (_dir, reader, writer) = two_handles();
        let one = id(1);
        let watch = reader.inner.absences.watch(&reader.inner.layout).expect("a watch");
        // A lookup of `one` reads the queue and does not find it in the set, then looks up
        // the path and finds nothing...
        let Known::Unknown(epoch) = watch.known(&one) else { panic!("not in the set") };
        // ...meanwhile `one` is committed, and another thread's lookup reads the event...
        commit(&writer, &one);
        assert!(matches!(watch.known(&id(2)), Known::Unknown(_)));
        // ...so what the first lookup found before the commit must not be remembered.
        watch.remember(&one, epoch);
        assert!(!absent(&reader, &one));
        // Without a commit in between it is.
        let Known::Unknown(epoch) = watch.known(&id(3)) else { panic!("not in the set") };
        watch.remember(&id(3), epoch);
        assert!(matches!(watch.known(&id(3)), Known::Absent));
    }

    #[test]
    fn the_set_is_bounded() {
        let (_dir, reader, _writer) = two_handles();
        for n in 0..CAPACITY as u64 + 10 {
            assert!(absent(&reader, &id(n)));
            assert!(reader.inner.absences.len() <= CAPACITY);
        }
        assert_eq!(reader.inner.absences.len(), 10, "full, it started over");
    }

    #[test]
    fn a_lost_event_forgets_every_miss() {
        let limit: usize = std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(16384);
        if limit > 1 << 17 {
            eprintln!("max_queued_events is {limit}: too many events to overflow the queue here");
            return;
        }
        let (dir, reader, writer) = two_handles();
        let last = id(u64::MAX);
        assert!(absent(&reader, &last));
        // More events than the queue holds, then the commit whose event is lost.
        let objects = dir.path().join("c/objects");
        for n in 0..=limit {
            std::fs::create_dir(objects.join(format!("x{n}"))).unwrap();
        }
        commit(&writer, &last);
        assert!(!absent(&reader, &last), "the overflow must forget the miss");
    }

    #[test]
    fn a_deleted_root_ends_the_set() {
        let (dir, reader, _writer) = two_handles();
        let one = id(1);
        assert!(absent(&reader, &one));
        let root = dir.path().join("c");
        std::fs::remove_dir_all(&root).unwrap();
        let again = Cache::open(&root).unwrap();
        commit(&again, &one);
        // The path leads to another directory now: lookups go by the path, to the new root.
        assert!(!absent(&reader, &one));
        assert!(absent(&reader, &id(2)));
        assert_eq!(reader.inner.absences.len(), 0);
    }

    #[test]
    fn a_root_moved_away_ends_the_set() {
        let (dir, reader, _writer) = two_handles();
        let one = id(1);
        assert!(absent(&reader, &one));
        let root = dir.path().join("c");
        std::fs::rename(&root, dir.path().join("old")).unwrap();
        let again = Cache::open(&root).unwrap();
        commit(&again, &one);
        assert!(!absent(&reader, &one));
        assert_eq!(reader.inner.absences.len(), 0);
    }

    #[test]
    fn objects_replaced_ends_the_set() {
        let (dir, reader, _writer) = two_handles();
        let one = id(1);
        assert!(absent(&reader, &one));
        let root = dir.path().join("c");
        // Another objects/ moved over the (empty) watched one.
        let other = dir.path().join("other");
        std::fs::create_dir_all(other.join(one.to_string())).unwrap();
        std::fs::write(other.join(format!("{one}/meta")), "{}").unwrap();
        std::fs::rename(&other, root.join("objects")).unwrap();
        assert!(!absent(&reader, &one));
        assert_eq!(reader.inner.absences.len(), 0);
    }

    #[test]
    fn a_directory_above_moved_away_ends_the_set_at_the_health_check() {
        let dir = tempdir();
        let root = dir.path().join("above/c");
        let reader = Cache::open(&root).unwrap();
        let one = id(1);
        assert!(absent(&reader, &one));
        std::fs::rename(dir.path().join("above"), dir.path().join("old")).unwrap();
        let again = Cache::open(&root).unwrap();
        commit(&again, &one);
        // No event tells (the root's own name did not change): the health check does.
        reader.check_usable().unwrap();
        assert!(!absent(&reader, &one));
        assert_eq!(reader.inner.absences.len(), 0);
    }
}
