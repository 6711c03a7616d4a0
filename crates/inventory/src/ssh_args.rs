//! What virtfleet takes from Ansible's extra `ssh` arguments (`ansible_ssh_common_args`,
//! `ansible_ssh_extra_args`): the jump hosts, as Kolla operators give them, with `-J`,
//! `-o ProxyJump=...` or `-o ProxyCommand="ssh -W %h:%p bastion"`. virtfleet is its own SSH
//! client, so it connects through the jump host itself; every other option is OpenSSH's
//! business and is not read (the host key is checked strictly whatever they say).

/// One host of a `ProxyJump` list: `[user@]host[:port]` or `ssh://[user@]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JumpHost {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    /// `-i` of a `ProxyCommand`'s ssh.
    pub key_file: Option<String>,
}

/// The jump hosts in `args` (one variable's text), in the order they are dialled: the first
/// is reached directly, each next one through the one before. None when the text names
/// none (or `none`). As with `ssh`, the first `ProxyJump` or `ProxyCommand` wins.
pub fn jump_hosts(args: &str) -> Result<Option<Vec<JumpHost>>, String> {
    let words = crate::shellwords::split_args(args)?;
    let mut words = words.iter();
    while let Some(word) = words.next() {
        let Some(flags) = word
            .strip_prefix('-')
            .filter(|f| !f.is_empty() && *f != "-")
        else {
            continue;
        };
        // Bundled as getopt reads them (`-qJ bastion`, `-CJbastion`): flags without a
        // value, then at most one that takes the rest of the word or the next word.
        for (at, flag) in flags.char_indices() {
            if NO_VALUE.contains(flag) {
                continue;
            }
            if !WITH_VALUE.contains(flag) {
                return Err(format!("{word}: -{flag} is not an option of ssh"));
            }
            let rest = &flags[at + flag.len_utf8()..];
            let value = match rest.is_empty() {
                false => rest.to_string(),
                true => words
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("-{flag} without a value"))?,
            };
            match flag {
                'J' => return proxy_jump(&value),
                'o' => {
                    if let Some(found) = option(&value)? {
                        return Ok(found);
                    }
                }
                // Another file of settings could say how to reach the host.
                'F' => {
                    return Err(format!(
                        "-F {value}: give the OpenSSH configuration to virtfleet itself (its \
                         -F option), not in the inventory's ssh arguments"
                    ))
                }
                _ => {}
            }
            break;
        }
    }
    Ok(None)
}

/// ssh's flags that take no value, and those that do (OpenSSH 9's getopt string).
const NO_VALUE: &str = "46AaCfGgKkMNnqsTtVvXxYy";
const WITH_VALUE: &str = "BbcDEeFIiJLlmOoPpQRSWw";

/// An `-o` option that says how the host is reached: its jump hosts (`Some(None)` for
/// `none`). Others are ssh's business.
fn option(option: &str) -> Result<Option<Option<Vec<JumpHost>>>, String> {
    let (key, setting) = option
        .split_once(['=', ' ', '\t'])
        .map(|(k, v)| (k.trim(), v.trim().trim_start_matches('=').trim()))
        .unwrap_or((option, ""));
    match key.to_ascii_lowercase().as_str() {
        "proxyjump" => proxy_jump(setting).map(Some),
        "proxycommand" => proxy_command(setting).map(|j| Some(j.map(|j| vec![j]))),
        _ => Ok(None),
    }
}

/// A `ProxyJump` list (`none`: no jump host), as in the OpenSSH configuration.
pub fn proxy_jump(list: &str) -> Result<Option<Vec<JumpHost>>, String> {
    if list.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    list.split(',')
        .map(|one| jump_host(one.trim()).map_err(|e| format!("ProxyJump {list}: {e}")))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// `[user@]host[:port]`, `ssh://[user@]host[:port]`, an IPv6 address in brackets.
fn jump_host(text: &str) -> Result<JumpHost, String> {
    let rest = text.strip_prefix("ssh://").unwrap_or(text);
    let (user, rest) = match rest.rsplit_once('@') {
        Some((user, rest)) => (Some(user.to_string()), rest),
        None => (None, rest),
    };
    let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| format!("{text:?}: no closing ]"))?;
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| format!("{text:?}: text after ]"))?,
            ),
        };
        (host, port)
    } else {
        match rest.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    let port = port
        .map(|p| {
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("{text:?}: {p:?} is not a port number"))
        })
        .transpose()?;
    let plain = |s: &str| {
        !s.is_empty()
            && !s.starts_with('-')
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-:%".contains(&b))
    };
    if !plain(host) || user.as_deref().is_some_and(|u| !plain(u)) {
        return Err(format!("{text:?} is not [user@]host[:port]"));
    }
    Ok(JumpHost {
        user,
        host: host.to_string(),
        port,
        key_file: None,
    })
}

/// `ssh [options] -W %h:%p [user@]host`, the classic bastion command: the same as ProxyJump
/// to that host. Anything else would run a program of the operator's, which virtfleet does
/// not do.
/// `ssh [options] -W %h:%p [user@]host` (see [`jump_hosts`]), as one jump host.
pub fn proxy_command(command: &str) -> Result<Option<JumpHost>, String> {
    if command.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let refuse = |why: &str| {
        format!(
            "ProxyCommand {command:?}: {why}; virtfleet connects through a jump host itself and \
             reads only `ssh [-q] [-l user] [-p port] [-i key] -W %h:%p [user@]host` (or use \
             ProxyJump)"
        )
    };
    let words = crate::shellwords::split_args(command).map_err(|e| refuse(&e))?;
    let mut words = words.iter();
    let program = words.next().map(String::as_str).unwrap_or_default();
    if program.rsplit('/').next() != Some("ssh") {
        return Err(refuse("not ssh"));
    }
    let (mut user, mut port, mut key_file, mut forward, mut host) = (None, None, None, None, None);
    while let Some(word) = words.next() {
        match word.as_str() {
            "-q" | "-T" | "-N" | "-C" | "-x" | "-a" | "-4" | "-6" => {}
            "-W" | "-l" | "-p" | "-i" => {
                let value = words
                    .next()
                    .ok_or_else(|| refuse(&format!("{word} without a value")))?;
                match word.as_str() {
                    "-W" => forward = Some(value.clone()),
                    "-l" => user = Some(value.clone()),
                    "-p" => port = Some(value.clone()),
                    _ => key_file = Some(value.clone()),
                }
            }
            flag if flag.starts_with('-') => {
                return Err(refuse(&format!("option {flag} is not read")))
            }
            destination if host.is_none() => host = Some(destination.to_string()),
            _ => return Err(refuse("a command after the host")),
        }
    }
    if !matches!(forward.as_deref(), Some("%h:%p" | "[%h]:%p")) {
        return Err(refuse("no -W %h:%p"));
    }
    let host = host.ok_or_else(|| refuse("no host"))?;
    let mut jump = jump_host(&host).map_err(|e| refuse(&e))?;
    // As in ssh, -l wins over a user@ of the destination.
    if let Some(user) = user {
        jump.user = Some(user);
    }
    if let Some(port) = port {
        jump.port = Some(
            port.parse()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| refuse(&format!("-p {port} is not a port number")))?,
        );
    }
    jump.key_file = key_file;
    Ok(Some(jump))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(user: Option<&str>, host: &str, port: Option<u16>) -> JumpHost {
        JumpHost {
            user: user.map(String::from),
            host: host.into(),
            port,
            key_file: None,
        }
    }

    #[test]
    fn proxy_jump_in_its_spellings() {
        let one = Some(vec![hop(Some("ops"), "bastion", Some(2222))]);
        for args in [
            "-o ProxyJump=ops@bastion:2222",
            "-oProxyJump=ops@bastion:2222",
            "-o 'ProxyJump ops@bastion:2222'",
            "-C -o ControlMaster=auto -J ops@bastion:2222",
            "-Jops@bastion:2222",
            "-o proxyjump=ssh://ops@bastion:2222",
            "-qJ ops@bastion:2222",
            "-CJops@bastion:2222",
            "-o ControlPath=~/.ansible/cp#%h -J ops@bastion:2222",
            "-p 2200 -i key -J ops@bastion:2222",
        ] {
            assert_eq!(jump_hosts(args).unwrap(), one, "{args}");
        }
        assert_eq!(
            jump_hosts("-J a,kolla@[fd00::5]:22").unwrap(),
            Some(vec![
                hop(None, "a", None),
                hop(Some("kolla"), "fd00::5", Some(22))
            ])
        );
        assert_eq!(jump_hosts("-o ProxyJump=none -J x").unwrap(), None);
        assert_eq!(jump_hosts("-o ServerAliveInterval=30").unwrap(), None);
        assert_eq!(jump_hosts("").unwrap(), None);
        for bad in [
            "-J",
            "-J bastion:0",
            "-J 'a b'",
            "-J -oops",
            "-J a:b",
            "-J [10.0.0.1]evil",
            "-F ./ssh.cfg -J a",
            "-Z",
        ] {
            assert!(jump_hosts(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_ssh_proxy_command_is_a_jump_and_any_other_is_refused() {
        let jump =
            jump_hosts(r#"-o ProxyCommand="ssh -W %h:%p -q -i ~/.ssh/b -p 2200 ops@bastion""#)
                .unwrap()
                .unwrap();
        assert_eq!(
            jump,
            [JumpHost {
                key_file: Some("~/.ssh/b".into()),
                ..hop(Some("ops"), "bastion", Some(2200))
            }]
        );
        let jump = jump_hosts("-o 'ProxyCommand=/usr/bin/ssh -l kolla -W [%h]:%p bastion'")
            .unwrap()
            .unwrap();
        assert_eq!(jump, [hop(Some("kolla"), "bastion", None)]);
        for bad in [
            "-o ProxyCommand='nc -X 5 -x proxy %h %p'",
            "-o ProxyCommand='ssh bastion'",
            "-o ProxyCommand='ssh -W %h:%p bastion rm -rf /'",
            "-o ProxyCommand='ssh -o Foo=bar -W %h:%p bastion'",
            "-o ProxyCommand='ssh -W %h:%p'",
        ] {
            let err = jump_hosts(bad).unwrap_err();
            assert!(err.contains("ProxyCommand"), "{bad}: {err}");
        }
    }
}
