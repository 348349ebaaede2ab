//! The `flk` binary: parses the command line and hands over to [`flk`].

use std::process::ExitCode;

use clap::Parser as _;

/// mimalloc instead of glibc's malloc for Rust's allocations: in Kafka mode a third of the
/// process's CPU was glibc's allocator (`_int_malloc`, `_int_free`, `malloc_consolidate`; perf,
/// docs/benchmarks.md "Performance round 3, third part").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    set_allocator_defaults();
    let cli = flk::Cli::parse();
    match flk::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("flk: error: {error:#}");
            ExitCode::from(1)
        }
    }
}

/// Allocator settings read from the environment only as the process starts, each with the
/// value `flk` runs with unless the operator set it:
/// - glibc's malloc (still used by the C libraries, librdkafka's threads above all) gives threads
///   that allocate at the same time arenas of their own, up to eight per core, and keeps what was
///   freed in each. Draining a backlog of 1,000,000 records held 348 MiB, and 191 MiB with four
///   arenas (two held as little but cost about 15 % more CPU per record under full load);
/// - mimalloc (Rust's allocations) returns freed pages to the system 10 ms after they empty by
///   default; the same drain peaked at 373 MiB that way and at 197 MiB returning them at once;
/// - mimalloc lets the kernel back its memory with transparent huge pages, so a first touch
///   zeroes 2 MiB at once, and on a virtual machine that hands freed memory back to its host each
///   of those pages is also faulted in there. During `flk replay` 12-25 % of the machine's CPU
///   samples were its thread zeroing pages (`clear_page_erms`); with huge pages off for the
///   process (mimalloc's `allow_thp` = 0 asks the kernel with `PR_SET_THP_DISABLE`) its
///   read-and-fold stage took 5.2-5.9 s instead of 8.1-8.9 s for 1,000,600 decisions.
///
/// (docs/benchmarks.md, "Performance round 3".)
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ALLOCATOR_DEFAULTS: [(&str, &str); 3] = [
    ("MALLOC_ARENA_MAX", "4"),
    ("MIMALLOC_PURGE_DELAY", "0"),
    ("MIMALLOC_ALLOW_THP", "0"),
];

/// Without one of [`ALLOCATOR_DEFAULTS`] in the environment, the binary starts itself again
/// (`exec`: same process id, arguments and environment) with the missing ones set. Values
/// already set, by the operator or by that first start, are left alone; if the new start fails
/// the process goes on with the allocators' own defaults.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_allocator_defaults() {
    use std::os::unix::process::CommandExt as _;

    let missing: Vec<(&str, &str)> = ALLOCATOR_DEFAULTS
        .into_iter()
        .filter(|(variable, _)| std::env::var_os(variable).is_none())
        .collect();
    if missing.is_empty() {
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
    let _error = command.args(arguments).envs(missing).exec();
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_allocator_defaults() {}
