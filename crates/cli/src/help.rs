//! `--help` in the docker CLI's (cobra/pflag) layout, rendered from the clap definitions.

use clap::{ArgAction, Command, CommandFactory};

use crate::cli::{Cli, usage};

/// docker's alias lists, shown under "Aliases:".
fn aliases(path: &str) -> Option<&'static str> {
    Some(match path {
        "images" | "image ls" => "berth image ls, berth image list, berth images",
        "rmi" | "image rm" => "berth image rm, berth image remove, berth rmi",
        "history" | "image history" => "berth image history, berth history",
        "tag" | "image tag" => "berth image tag, berth tag",
        "save" | "image save" => "berth image save, berth save",
        "load" | "image load" => "berth image load, berth load",
        "import" | "image import" => "berth image import, berth import",
        "pull" | "image pull" => "berth image pull, berth pull",
        "build" | "image build" => "berth image build, berth build",
        "push" | "image push" => "berth image push, berth push",
        "info" | "system info" => "berth system info, berth info",
        "events" | "system events" => "berth system events, berth events",
        "ps" | "container ls" => {
            "berth container ls, berth container list, berth container ps, berth ps"
        }
        "rm" | "container rm" => "berth container rm, berth container remove, berth rm",
        "run" | "container run" => "berth container run, berth run",
        "create" | "container create" => "berth container create, berth create",
        "start" | "container start" => "berth container start, berth start",
        "stop" | "container stop" => "berth container stop, berth stop",
        "kill" | "container kill" => "berth container kill, berth kill",
        "restart" | "container restart" => "berth container restart, berth restart",
        "wait" | "container wait" => "berth container wait, berth wait",
        "logs" | "container logs" => "berth container logs, berth logs",
        "attach" | "container attach" => "berth container attach, berth attach",
        "exec" | "container exec" => "berth container exec, berth exec",
        "top" | "container top" => "berth container top, berth top",
        "stats" | "container stats" => "berth container stats, berth stats",
        "pause" | "container pause" => "berth container pause, berth pause",
        "unpause" | "container unpause" => "berth container unpause, berth unpause",
        "rename" | "container rename" => "berth container rename, berth rename",
        "cp" | "container cp" => "berth container cp, berth cp",
        "export" | "container export" => "berth container export, berth export",
        "diff" | "container diff" => "berth container diff, berth diff",
        "commit" | "container commit" => "berth container commit, berth commit",
        "update" | "container update" => "berth container update, berth update",
        "port" | "container port" => "berth container port, berth port",
        "network ls" => "berth network ls, berth network list",
        "network rm" => "berth network rm, berth network remove",
        _ => return None,
    })
}

/// pflag's FlagUsages: "  -a, --all   text", description column after the longest flag.
fn flag_lines(cmd: &Command) -> String {
    let mut rows: Vec<(String, String, String)> = Vec::new();
    for a in cmd.get_arguments() {
        // clap's own -h/--help is not listed; an explicit --help (run/create) is.
        if a.is_positional() || a.is_hide_set() || (a.get_id() == "help" && a.get_short().is_some())
        {
            continue;
        }
        let Some(long) = a.get_long() else { continue };
        let mut left = match a.get_short() {
            Some(s) => format!("  -{s}, --{long}"),
            None => format!("      --{long}"),
        };
        let takes_value = matches!(a.get_action(), ArgAction::Set | ArgAction::Append);
        let vname = a
            .get_value_names()
            .and_then(|v| v.first())
            .map(|s| s.to_string())
            .unwrap_or_default();
        if takes_value && vname != "bool" {
            left.push(' ');
            left.push_str(if vname.is_empty() { "string" } else { &vname });
        }
        let mut text = a.get_help().map(|h| h.to_string()).unwrap_or_default();
        let default: Vec<String> = a
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        if let Some(d) = default.first().filter(|d| !d.is_empty() && takes_value) {
            // pflag quotes only string defaults.
            if vname != "string" && !vname.is_empty() {
                text.push_str(&format!(" (default {d})"));
            } else {
                text.push_str(&format!(" (default \"{d}\")"));
            }
        }
        if vname == "map" {
            // pflag prints an empty Go map as its default.
            text.push_str(" (default map[])");
        }
        rows.push((long.to_string(), left, text));
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let width = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    // pflag wraps descriptions to the terminal width, 80 columns when not a terminal.
    let cols = help_width();
    rows.iter()
        .map(|(_, l, t)| format!("{l:width$}   {}\n", wrap(width + 3, cols, t)))
        .collect()
}

/// The width docker wraps help to: the terminal's, or 80.
fn help_width() -> usize {
    crate::commands::stdio::term_size()
        .map(|(_, c)| c as usize)
        .filter(|c| *c > 0)
        .unwrap_or(80)
        // docker passes width - 1 to pflag.
        .saturating_sub(1)
}

/// pflag's wrap: text indented by `i` within `w` columns, with 5 columns of slop so the
/// last word does not dangle alone.
fn wrap(i: usize, w: usize, s: &str) -> String {
    let mut indent = i;
    let mut r = String::new();
    if w.saturating_sub(indent) < 24 {
        indent = 16;
        r.push('\n');
        r.push_str(&" ".repeat(indent));
    }
    let avail = w.saturating_sub(indent);
    let pad = format!("\n{}", " ".repeat(indent));
    if avail < 24 {
        return r + &s.replace('\n', &pad);
    }
    let slop = 5;
    let n = avail - slop;
    let (first, mut rest) = wrap_n(n, slop, s);
    r.push_str(&first.replace('\n', &pad));
    while !rest.is_empty() {
        let (t, more) = wrap_n(n, slop, rest);
        r.push_str(&pad);
        r.push_str(&t.replace('\n', &pad));
        rest = more;
    }
    r
}

fn wrap_n(i: usize, slop: usize, s: &str) -> (&str, &str) {
    if i + slop > s.len() {
        return (s, "");
    }
    let head = &s[..floor_char(s, i)];
    let Some(w) = head.rfind([' ', '\t', '\n']).filter(|w| *w > 0) else {
        return (s, "");
    };
    if let Some(nl) = head.rfind('\n').filter(|nl| *nl > 0 && *nl < w) {
        return (&s[..nl], &s[nl + 1..]);
    }
    (&s[..w], &s[w + 1..])
}

fn floor_char(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn command_lines(cmds: &[&Command]) -> String {
    cmds.iter()
        .map(|c| {
            let about = c.get_about().map(|a| a.to_string()).unwrap_or_default();
            format!("  {:<11} {about}\n", c.get_name())
        })
        .collect()
}

/// Help text for a command path ("", "image", "image ls", "images"), or None if unknown.
pub fn render(path: &str) -> Option<String> {
    let mut root = Cli::command();
    // Subcommands are defined lazily (cli::Lazy); help reads all of them.
    root.build();
    if path.is_empty() {
        let pick = |names: &[&str]| -> Vec<&Command> {
            names
                .iter()
                .filter_map(|n| root.get_subcommands().find(|c| c.get_name() == *n))
                .collect()
        };
        let mut rest: Vec<&Command> = root
            .get_subcommands()
            .filter(|c| {
                !matches!(
                    c.get_name(),
                    "images" | "version" | "info" | "image" | "network" | "system"
                )
            })
            .collect();
        rest.sort_by_key(|c| c.get_name());
        return Some(format!(
            "Usage:  {}\n\nA self-sufficient runtime for containers\n\nCommon Commands:\n{}\nManagement Commands:\n{}\nCommands:\n{}\nGlobal Options:\n{}\nRun 'berth COMMAND --help' for more information on a command.\n",
            usage("").replace(" [ARG...]", ""),
            command_lines(&pick(&["images", "version", "info"])),
            command_lines(&pick(&["image", "network", "system"])),
            command_lines(&rest),
            flag_lines(&root),
        ));
    }
    let mut cmd = &root;
    for word in path.split(' ') {
        cmd = cmd.get_subcommands().find(|c| c.get_name() == word)?;
    }
    let about = cmd.get_about().map(|a| a.to_string()).unwrap_or_default();
    if cmd.has_subcommands() {
        let mut subs: Vec<&Command> = cmd.get_subcommands().collect();
        subs.sort_by_key(|c| c.get_name());
        return Some(format!(
            "Usage:  berth {path} COMMAND\n\n{about}\n\nCommands:\n{}\nRun 'berth {path} COMMAND --help' for more information on a command.\n",
            command_lines(&subs)
        ));
    }
    let mut out = format!("Usage:  {}\n\n{about}\n", usage(path));
    if let Some(a) = aliases(path) {
        out.push_str(&format!("\nAliases:\n  {a}\n"));
    }
    let flags = flag_lines(cmd);
    if !flags.is_empty() {
        out.push_str(&format!("\nOptions:\n{flags}"));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_help_in_docker_layout() {
        let h = render("images").unwrap();
        assert!(h.starts_with("Usage:  berth images [OPTIONS] [REPOSITORY[:TAG]]\n\nList images\n\nAliases:\n  berth image ls, berth image list, berth images\n\nOptions:\n  -a, --all             Show all images"));
        assert!(h.contains("\n  -f, --filter filter   Filter output"));
        let h = render("history").unwrap();
        // Wrapped at 79 columns like docker when not on a terminal.
        assert!(h.contains(
            "  -H, --human             Print sizes and dates in human readable format\n                          (default true)\n"
        ));
    }

    #[test]
    fn group_and_top_help() {
        let h = render("image").unwrap();
        assert!(h.starts_with("Usage:  berth image COMMAND\n\nManage images\n\nCommands:\n"));
        assert!(h.contains("\n  ls          List images\n"));
        let h = render("").unwrap();
        assert!(h.contains("\nGlobal Options:\n"));
        assert!(h.contains("  -l, --log-level string   Set the logging level"));
    }
}
