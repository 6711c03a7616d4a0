//! Man pages made from the command-line definition (clap_mangen's sections), with the exit
//! status on every page and examples on the main one as sections of their own.

use std::io::{self, Write};
use std::path::Path;

use clap_mangen::Man;

/// What each exit status means: the man pages' EXIT STATUS and `--help` both say this.
const EXIT_CODES: [(u8, &str); 3] = [
    (0, "every targeted host is ok or changed"),
    (
        1,
        "a host failed, was unreachable or skipped; audit: a finding at --fail-on or above; \
         certs expiry: a certificate expired or a host could not be asked",
    ),
    (
        2,
        "invalid input (bad inventory, globals, certificates, options), found before any \
         host was changed: nothing is written anywhere",
    ),
];

const EXAMPLES: [&str; 4] = [
    "virtfleet -i multinode check --diff",
    "virtfleet -i multinode deploy --limit compute01",
    "virtfleet -i multinode rotate",
    "virtfleet -i multinode audit --report audit.json",
];

/// The environment variables virtfleet reads besides those of its options (which the
/// ENVIRONMENT section takes from the command-line definition).
const ENVIRONMENT: [(&str, &str); 3] = [
    (
        "HOME",
        "~ in key and known_hosts paths, and the default known_hosts file \
         (~/.ssh/known_hosts); ~/.ssh/config is found in the home directory the user \
         database names, as ssh finds it",
    ),
    ("SSH_AUTH_SOCK", "the SSH agent, tried after the key files"),
    (
        "USER",
        "the SSH user when neither the inventory (ansible_user) nor the SSH client \
         configuration names one",
    ),
];

const GUIDE: &str = "The operator's guide, every command and globals variable: docs/ in the \
    source tree, installed by scripts/install.sh as PREFIX/share/doc/virtfleet (commands.md, \
    variables.md, rotation.md).";

/// `--help`'s closing text: the exit status, examples and where the guide is.
pub fn after_help() -> String {
    let codes: Vec<String> = EXIT_CODES
        .iter()
        .map(|(code, meaning)| format!("  {code}  {meaning}"))
        .collect();
    let examples: Vec<String> = EXAMPLES.iter().map(|e| format!("  {e}")).collect();
    format!(
        "EXIT STATUS:\n{}\n\nEXAMPLES:\n{}\n\n{GUIDE}",
        codes.join("\n"),
        examples.join("\n")
    )
}

/// Text for a roff line: a leading `.` or `'` would be a request, `\` an escape, and `-` is
/// written `\-` so that options stay plain hyphens.
fn roff(text: &str) -> String {
    let text = text.replace('\\', "\\e").replace('-', "\\-");
    match text.starts_with(['.', '\'']) {
        true => format!("\\&{text}"),
        false => text,
    }
}

fn exit_status_section(w: &mut dyn Write) -> io::Result<()> {
    writeln!(w, ".SH \"EXIT STATUS\"")?;
    for (code, meaning) in EXIT_CODES {
        writeln!(w, ".TP\n\\fB{code}\\fR\n{}", roff(meaning))?;
    }
    Ok(())
}

/// The options' variables (`--configdir`'s VIRTFLEET_CONFIGDIR), then [`ENVIRONMENT`].
fn environment_section(command: &clap::Command, w: &mut dyn Write) -> io::Result<()> {
    writeln!(w, ".SH ENVIRONMENT")?;
    for arg in command.get_arguments().filter(|a| !a.is_hide_set()) {
        let (Some(name), Some(long)) = (arg.get_env(), arg.get_long()) else {
            continue;
        };
        let name = name.to_string_lossy();
        writeln!(
            w,
            ".TP\n\\fB{}\\fR\n{}",
            roff(&name),
            roff(&format!("--{long} when it is not given"))
        )?;
    }
    for (name, meaning) in ENVIRONMENT {
        writeln!(w, ".TP\n\\fB{name}\\fR\n{}", roff(meaning))?;
    }
    Ok(())
}

fn examples_section(w: &mut dyn Write) -> io::Result<()> {
    writeln!(w, ".SH EXAMPLES\n.nf")?;
    for example in EXAMPLES {
        writeln!(w, "{}", roff(example))?;
    }
    writeln!(w, ".fi\n.SH \"SEE ALSO\"\n{}", roff(GUIDE))
}

/// The main page.
pub fn print(command: clap::Command) -> io::Result<()> {
    let command = built(command);
    page(
        &Man::new(command.clone()),
        &command,
        true,
        &mut io::stdout().lock(),
    )
}

/// virtfleet.1 and a page per subcommand (virtfleet-deploy.1, virtfleet-certs-issue.1, ...)
/// in `dir`, created if missing.
pub fn write_all(command: clap::Command, dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    write_tree(&built(command), dir, true)
}

/// Subcommands named as their pages are (`virtfleet-deploy`), without clap's `help`.
fn built(command: clap::Command) -> clap::Command {
    let mut command = command.disable_help_subcommand(true);
    command.build();
    command
}

fn write_tree(command: &clap::Command, dir: &Path, main: bool) -> io::Result<()> {
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_tree(sub, dir, false)?;
    }
    let man = Man::new(command.clone());
    let mut file = std::fs::File::create(dir.join(man.get_filename()))?;
    page(&man, command, main, &mut file)
}

fn page(man: &Man, command: &clap::Command, main: bool, w: &mut dyn Write) -> io::Result<()> {
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    if command.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(w)?;
    }
    if command.has_subcommands() {
        man.render_subcommands_section(w)?;
    }
    if main {
        environment_section(command, w)?;
    }
    exit_status_section(w)?;
    if main {
        examples_section(w)?;
        man.render_version_section(w)?;
    }
    Ok(())
}
