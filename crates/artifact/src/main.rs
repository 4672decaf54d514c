//! The `artifact` command-line program.

fn main() -> std::process::ExitCode {
    eprintln!("artifact: no commands yet (issues 2-4 add pack, unpack, add, ls, serve, get, put)");
    std::process::ExitCode::FAILURE
}
