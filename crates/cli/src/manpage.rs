//! Man pages made from the command-line definition (clap_mangen's sections), with the exit
//! status on every page and examples on the main one as sections of their own.

use std::io::{self, Write};
use std::path::Path;

use clap_mangen::Man;

const EXIT_STATUS: &str = r#".SH "EXIT STATUS"
.TP
\fB0\fR
every targeted host is ok or changed
.TP
\fB1\fR
a host failed, was unreachable or skipped; audit: a finding at \-\-fail\-on or above; certs expiry: a certificate expired or a host could not be asked
.TP
\fB2\fR
invalid input (bad inventory, globals, certificates, options), found before any host was changed: nothing is written anywhere
"#;

const EXAMPLES: &str = r#".SH EXAMPLES
.nf
virtfleet \-i multinode check \-\-diff
virtfleet \-i multinode deploy \-\-limit compute01
virtfleet \-i multinode rotate
virtfleet \-i multinode audit \-\-report audit.json
.fi
.SH "SEE ALSO"
The operator's guide, every command and globals variable: docs/ in the source tree, installed
by scripts/install.sh as PREFIX/share/doc/virtfleet (commands.md, variables.md, rotation.md).
"#;

/// The main page.
pub fn print(command: clap::Command) -> io::Result<()> {
    let command = built(command);
    page(&command, true, &mut io::stdout().lock())
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
    page(command, main, &mut file)
}

fn page(command: &clap::Command, main: bool, w: &mut dyn Write) -> io::Result<()> {
    let man = Man::new(command.clone());
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
    w.write_all(EXIT_STATUS.as_bytes())?;
    if main {
        w.write_all(EXAMPLES.as_bytes())?;
        man.render_version_section(w)?;
    }
    Ok(())
}
