//! README.md is a script that works: its two commands are the ones CI runs, and every line of
//! its walkthrough runs, in order, in an empty folder, and prints what its comment says.

use custos_tests::{custos_bin, workspace};

/// Splits a shell line into words: spaces separate, double quotes group (enough for the
/// README, which has no escapes, variables or pipes in its walkthrough).
fn words(line: &str) -> Vec<String> {
    let (mut out, mut word, mut quoted, mut started) = (Vec::new(), String::new(), false, false);
    for c in line.chars() {
        match c {
            '"' => (quoted, started) = (!quoted, true),
            c if c.is_whitespace() && !quoted => {
                if started {
                    out.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            c => (word, started) = (word + &c.to_string(), true),
        }
    }
    assert!(!quoted, "an unclosed quote in {line:?}");
    if started {
        out.push(word);
    }
    out
}

/// The lines of the code block after the walkthrough marker, each with the text its
/// `# prints: …` comment expects.
fn walkthrough(readme: &str) -> Vec<(String, Option<String>)> {
    let after = readme.split_once("<!-- walkthrough:").expect("the README marks its walkthrough").1;
    let block = after.split_once("```sh\n").expect("a sh block").1.split_once("```").expect("closed").0;
    block
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| match l.split_once('#') {
            Some((cmd, comment)) => {
                (cmd.trim().to_string(), comment.trim().strip_prefix("prints:").map(|p| p.trim().to_string()))
            }
            None => (l.trim().to_string(), None),
        })
        .collect()
}

#[test]
fn the_walkthrough_runs_line_by_line_and_prints_what_it_says() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let lines = walkthrough(&readme);
    assert!(lines.len() >= 15, "{lines:?}");
    let folder = tempfile::tempdir().unwrap();
    let mut commands_seen = std::collections::BTreeSet::new();
    for (line, expect) in &lines {
        let w = words(line);
        assert_eq!(w[0], "custos", "every walkthrough line runs custos: {line}");
        commands_seen.insert(w[1].clone());
        let out = std::process::Command::new(custos_bin())
            .args(&w[1..])
            .current_dir(folder.path())
            .env_remove("CUSTOS_DB")
            .env_remove("CUSTOS_SERVER")
            .output()
            .unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "README line failed: {line}\n{stdout}\n{stderr}");
        if let Some(text) = expect {
            assert!(stdout.contains(text.as_str()), "README line {line} should print {text:?}; it printed:\n{stdout}");
        }
    }
    assert!(folder.path().join("custos-data").is_dir(), "the default folder is ./custos-data, as the README says");
    // The walkthrough touches every command the synopsis lists, except those that need
    // something it cannot have (a server, a second ledger) or a withdrawal to undo.
    for name in ["deposit", "withdraw", "flag", "reimburse", "suspend-withdrawals", "resume-withdrawals", "import"] {
        assert!(commands_seen.contains(name), "{name} is not in the walkthrough");
    }
    for name in
        ["balances", "losses", "history", "replay", "withdrawals", "log", "digest", "verify", "rebuild", "export"]
    {
        assert!(commands_seen.contains(name), "{name} is not in the walkthrough");
    }
}

#[test]
fn the_two_commands_are_the_ones_ci_runs() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let ci = std::fs::read_to_string(workspace().join(".ci/run")).unwrap();
    let block = readme.split_once("## The two commands").unwrap().1.split_once("```sh\n").unwrap().1;
    let block = block.split_once("```").unwrap().0;
    let commands: Vec<&str> =
        block.lines().filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty()).collect();
    assert_eq!(commands, ["cargo run --release -p custos -- demo", "cargo test --workspace"]);
    assert!(ci.contains("\ncargo test --workspace\n"), "CI runs the README's test command");
    assert!(ci.contains("cargo run --release -q -p custos -- demo"), "CI runs the README's main job");
}

#[test]
fn every_option_has_a_line_of_help() {
    let help = |args: &[&str]| {
        let out = std::process::Command::new(custos_bin()).args(args).arg("--help").output().unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let top = help(&[]);
    let commands: Vec<String> = top
        .split_once("Commands:")
        .unwrap()
        .1
        .split_once("Options:")
        .unwrap()
        .0
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect();
    assert!(commands.len() > 15, "{commands:?}");
    let mut bare = Vec::new();
    for c in &commands {
        let text = help(&[c.as_str()]);
        let options = text.split_once("Options:").map(|x| x.1).unwrap_or("");
        let lines: Vec<&str> = options.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let t = line.trim();
            // An option line is `--name <VALUE>  Help`, or its help on the lines after it
            // (clap wraps long ones); an option with neither is bare.
            if t.starts_with("--") || t.starts_with('-') {
                let after_name = t.split_once("  ").map(|x| x.1.trim()).unwrap_or("");
                let next = lines.get(i + 1).map(|l| l.trim()).unwrap_or("");
                let help_below = !next.is_empty() && !next.starts_with('-');
                if after_name.is_empty() && !help_below {
                    bare.push(format!("{c}: {t}"));
                }
            }
        }
        if c == "serve" {
            assert!(!options.contains("--server"), "serve --help offers --server: {options}");
        }
    }
    assert!(bare.is_empty(), "options without a line of help:\n{}", bare.join("\n"));
}
