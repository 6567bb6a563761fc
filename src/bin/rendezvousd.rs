//! `rendezvousd`: see rendezvousd(8). The program lives in the library
//! (`front::rendezvousd`), beside the code it drives.

fn main() -> std::process::ExitCode {
    rendezvous::rendezvousd_main()
}
