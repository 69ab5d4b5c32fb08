//! Running helper programs (git, ssh-keygen, psql, …): the one place that starts a command,
//! waits for it and turns a failure into a test failure that shows what went wrong.

use std::process::{Command, Output};

/// Runs `command` to the end with its standard input closed and returns its output, whether it
/// succeeded or not. Fails the test only when the program cannot be started at all.
pub(crate) fn output(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", describe(command)))
}

/// Runs `command` and returns its standard output; fails the test, showing the command and its
/// error output, unless it succeeds.
pub(crate) fn run(command: &mut Command) -> String {
    let output = output(command);
    expect_success(&describe(command), &output)
}

/// The standard output of a finished program; fails the test, naming it as `what` and showing
/// its error output, unless it succeeded.
pub(crate) fn expect_success(what: &str, output: &Output) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Sends `signal` (a name such as `TERM` or `KILL`) to the process `pid` with kill(1). The
/// harness only ever signals children it started and has not reaped yet.
pub(crate) fn send_signal(pid: u32, signal: &str) {
    let output = output(
        Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string()),
    );
    assert!(
        output.status.success(),
        "kill -{signal} {pid} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `program ["arg", …]` and, when it is set, the directory it runs in.
fn describe(command: &Command) -> String {
    let args: Vec<_> = command.get_args().collect();
    let mut text = format!("{} {args:?}", command.get_program().to_string_lossy());
    if let Some(dir) = command.get_current_dir() {
        text.push_str(&format!(" in {}", dir.display()));
    }
    text
}

/// The last `max` bytes of `text` (from a character boundary), for logs in failure messages.
pub(crate) fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}
