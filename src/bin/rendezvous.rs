//! `rendezvous`: see rendezvous(1). The program lives in the library
//! (`front::rendezvous`), beside the code it drives.

fn main() -> std::process::ExitCode {
    rendezvous::rendezvous_main()
}
