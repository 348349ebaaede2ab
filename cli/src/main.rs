//! The `flk` binary: parses the command line and hands over to [`flk`].

use std::process::ExitCode;

use clap::Parser as _;

/// mimalloc instead of glibc's malloc for Rust's allocations: in Kafka mode a third of the
/// process's CPU was glibc's allocator (`_int_malloc`, `_int_free`, `malloc_consolidate`; perf,
/// docs/benchmarks.md "Performance round 3, third part").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = flk::Cli::parse();
    match flk::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("flk: error: {error:#}");
            ExitCode::from(1)
        }
    }
}

/// glibc's malloc gives threads that allocate at the same time arenas of their own (up to eight
/// per core) and keeps what was freed in each. With the Kafka client's and the runtime's
/// threads, `flk serve` draining a backlog of 1,000,000 records held 348 MiB, and 191 MiB with
/// four arenas (two held as little but cost about 15 % more CPU per record under full load:
/// docs/benchmarks.md, "Performance round 3"). glibc reads the limit from the
/// environment only as the process starts, so without one the binary starts itself again
/// (`exec`: same process id, arguments and environment) with `MALLOC_ARENA_MAX` set. A value
/// already set, by the operator or by that first start, is left alone; if the new start fails
/// the process goes on with glibc's default.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    use std::os::unix::process::CommandExt as _;

    const VARIABLE: &str = "MALLOC_ARENA_MAX";
    /// The arenas glibc may create, when the environment does not say.
    const MALLOC_ARENAS: &str = "4";
    if std::env::var_os(VARIABLE).is_some() {
        return;
    }
    let Ok(executable) = std::env::current_exe() else {
        return;
    };
    let mut arguments = std::env::args_os();
    let mut command = std::process::Command::new(executable);
    if let Some(name) = arguments.next() {
        command.arg0(name);
    }
    // `exec` returns only when it failed.
    let _error = command.args(arguments).env(VARIABLE, MALLOC_ARENAS).exec();
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}
