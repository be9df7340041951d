use super::*;

fn stage0(src: &str) -> Vec<Instruction> {
    let df = parse(src).unwrap_or_else(|e| panic!("{src:?}: {e}"));
    df.stages[0].instructions.clone()
}

fn one(src: &str) -> InstructionKind {
    let full = format!("FROM scratch\n{src}");
    let mut ins = stage0(&full);
    assert_eq!(ins.len(), 1, "{src:?}: {ins:?}");
    ins.remove(0).kind
}

fn error(src: &str) -> (usize, String) {
    match parse(src) {
        Ok(df) => panic!("{src:?} parsed: {df:?}"),
        Err(e) => (e.line, e.message),
    }
}

fn s(v: &str) -> String {
    v.to_string()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter().map(|(a, b)| (s(a), s(b))).collect()
}

#[test]
fn stages_names_and_global_args() {
    let df = parse(
        "ARG BASE=busybox\nARG V\nFROM ${BASE}:1 AS Build\nRUN make\nfrom --platform=linux/amd64 scratch as final\nCOPY --from=build /a /b\n",
    )
    .expect("parse");
    assert_eq!(df.escape, '\\');
    assert_eq!(df.global_args.len(), 2);
    assert_eq!(
        df.global_args[0].kind,
        InstructionKind::Arg(vec![(s("BASE"), Some(s("busybox")))])
    );
    assert_eq!(df.stages.len(), 2);
    let (a, b) = (&df.stages[0], &df.stages[1]);
    assert_eq!(
        (a.index, a.name.as_deref(), a.base.as_str(), a.line),
        (0, Some("build"), "${BASE}:1", 3)
    );
    assert_eq!(a.instructions[0].original, "RUN make");
    assert_eq!(b.name.as_deref(), Some("final"));
    assert_eq!(b.platform.as_deref(), Some("linux/amd64"));
    assert_eq!(b.line, 5);
    match &b.instructions[0].kind {
        InstructionKind::Copy(c) => {
            assert_eq!(c.from.as_deref(), Some("build"));
            assert_eq!(c.sources, vec![s("/a")]);
            assert_eq!(c.dest, "/b");
        }
        k => panic!("{k:?}"),
    }
}

#[test]
fn directives() {
    let df = parse("# syntax=docker/dockerfile:1\n# ESCAPE = `\nFROM scratch\nRUN a `\n  b\n")
        .expect("parse");
    assert_eq!(df.escape, '`');
    assert_eq!(df.syntax.as_deref(), Some("docker/dockerfile:1"));
    assert_eq!(df.stages[0].instructions[0].original, "RUN a   b");

    // After a blank line, an instruction or a plain comment, `# escape=` is just a comment.
    for src in [
        "\n# escape=`\nFROM scratch\nRUN a \\\n b\n",
        "# hello\n# escape=`\nFROM scratch\nRUN a \\\n b\n",
        "FROM scratch\n# escape=`\nRUN a \\\n b\n",
    ] {
        let df = parse(src).expect(src);
        assert_eq!(df.escape, '\\', "{src:?}");
        assert_eq!(df.stages[0].instructions[0].original, "RUN a  b", "{src:?}");
    }
    // Unknown directives don't end the block.
    let df = parse("# foo=bar\n# escape=`\nFROM scratch\n").expect("parse");
    assert_eq!(df.escape, '`');

    assert_eq!(
        error("# escape=x\nFROM scratch\n"),
        (1, s("invalid escape token 'x' does not match ` or \\"))
    );
    assert_eq!(
        error("# escape=`\n# escape=\\\nFROM scratch\n"),
        (2, s("only one escape parser directive can be used"))
    );
}

#[test]
fn windows_paths_with_backtick() {
    let ins = stage0(
        "# escape=`\nFROM scratch\nCOPY testfile.txt c:\\\nRUN dir c:\\\nWORKDIR c:\\windows `\n  \\system32\n",
    );
    assert_eq!(ins.len(), 3);
    match &ins[0].kind {
        InstructionKind::Copy(c) => assert_eq!(c.dest, "c:\\"),
        k => panic!("{k:?}"),
    }
    assert_eq!(
        ins[1].kind,
        InstructionKind::Run(Run {
            command: Some(Command::Shell(s("dir c:\\"))),
            ..Run::default()
        })
    );
    assert_eq!(
        ins[2].kind,
        InstructionKind::Workdir(s("c:\\windows   \\system32"))
    );
}

#[test]
fn continuations_comments_and_blank_lines() {
    let ins = stage0(
        "FROM scratch\n\n  # a comment\nRUN apt-get update \\\n# comment inside\n    # indented comment\n\n  && apt-get install -y \\\n\t\n    curl\n   run   echo   hi   \nRUN a \\   \n b\n",
    );
    assert_eq!(ins.len(), 3);
    assert_eq!(
        ins[0].original,
        "RUN apt-get update   && apt-get install -y     curl"
    );
    assert_eq!(ins[0].line, 4);
    assert_eq!(ins[1].original, "run   echo   hi");
    assert_eq!(ins[1].line, 11);
    assert_eq!(
        ins[1].kind,
        InstructionKind::Run(Run {
            command: Some(Command::Shell(s("echo   hi"))),
            ..Run::default()
        })
    );
    assert_eq!(ins[2].original, "RUN a  b");
    // CRLF and a BOM.
    let ins = stage0("\u{feff}FROM scratch\r\nRUN a \\\r\n b\r\n");
    assert_eq!(ins[0].original, "RUN a  b");
    // A continuation at the end of the file.
    let ins = stage0("FROM scratch\nRUN a \\");
    assert_eq!(ins[0].original, "RUN a");
}

#[test]
fn json_and_shell_forms() {
    let cases: &[(&str, Command)] = &[
        (
            "CMD [\"echo\", \"hi\"]",
            Command::Exec(vec![s("echo"), s("hi")]),
        ),
        ("CMD   [ \"a\\\"b\" ]  ", Command::Exec(vec![s("a\"b")])),
        ("CMD []", Command::Exec(vec![])),
        ("CMD ['single']", Command::Shell(s("['single']"))),
        (
            "CMD [\"unterminated\"",
            Command::Shell(s("[\"unterminated\"")),
        ),
        (
            "CMD [\"a\"] trailing",
            Command::Shell(s("[\"a\"] trailing")),
        ),
        ("CMD echo \"$HOME\"", Command::Shell(s("echo \"$HOME\""))),
        ("cmd", Command::Shell(s(""))),
        (
            "ENTRYPOINT [\"/bin/sh\", \"-c\"]",
            Command::Exec(vec![s("/bin/sh"), s("-c")]),
        ),
    ];
    for (src, want) in cases {
        let got = match one(src) {
            InstructionKind::Cmd(c) | InstructionKind::Entrypoint(c) => c,
            k => panic!("{k:?}"),
        };
        assert_eq!(&got, want, "{src:?}");
    }
    assert_eq!(
        error("FROM scratch\nCMD [\"a\", 1]\n"),
        (
            2,
            s("when using JSON array syntax, arrays must be comprised of strings only")
        )
    );
    assert_eq!(
        one("SHELL [\"/bin/bash\", \"-c\"]"),
        InstructionKind::Shell(vec![s("/bin/bash"), s("-c")])
    );
    assert_eq!(
        error("FROM scratch\nSHELL /bin/bash -c\n").1,
        "SHELL requires the arguments to be in JSON form"
    );
}

#[test]
fn env_and_label() {
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("ENV a=1 b=$a", &[("a", "1"), ("b", "$a")]),
        ("ENV A b c  d", &[("A", "b c  d")]),
        (
            "ENV A=\"x y\" B='$z' C=a\\ b",
            &[("A", "\"x y\""), ("B", "'$z'"), ("C", "a\\ b")],
        ),
        ("ENV E=", &[("E", "")]),
        ("ENV A=\"a\\\"b\"", &[("A", "\"a\\\"b\"")]),
        (
            "LABEL \"com.example.vendor\"=\"ACME Inc\" version=1.0",
            &[
                ("\"com.example.vendor\"", "\"ACME Inc\""),
                ("version", "1.0"),
            ],
        ),
        ("LABEL multi=\"a \\\n  b\"", &[("multi", "\"a   b\"")]),
    ];
    for (src, want) in cases {
        let got = match one(src) {
            InstructionKind::Env(p) | InstructionKind::Label(p) => p,
            k => panic!("{k:?}"),
        };
        assert_eq!(got, pairs(want), "{src:?}");
    }
    let errs: &[(&str, &str)] = &[
        ("ENV", "ENV requires at least one argument"),
        ("ENV =x", "ENV names can not be blank"),
        (
            "ENV a=1 b",
            "Syntax error - can't find = in \"b\". Must be of the form: name=value",
        ),
        ("ENV onlyname", "ENV must have two arguments"),
        ("LABEL", "LABEL requires at least one argument"),
        ("ENV --x=1 a=b", "Unknown flag: x"),
    ];
    for (src, want) in errs {
        assert_eq!(
            error(&format!("FROM scratch\n{src}\n")),
            (2, s(want)),
            "{src:?}"
        );
    }
}

#[test]
fn arg_user_workdir_expose_volume() {
    assert_eq!(
        one("ARG a=1 b \"c\"=\"x y\""),
        InstructionKind::Arg(vec![
            (s("a"), Some(s("1"))),
            (s("b"), None),
            (s("\"c\""), Some(s("\"x y\"")))
        ])
    );
    assert_eq!(one("USER app:app"), InstructionKind::User(s("app:app")));
    assert_eq!(one("WORKDIR /a b"), InstructionKind::Workdir(s("/a b")));
    assert_eq!(
        one("STOPSIGNAL SIGKILL"),
        InstructionKind::Stopsignal(s("SIGKILL"))
    );
    assert_eq!(
        one("MAINTAINER Jo <jo@x>"),
        InstructionKind::Maintainer(s("Jo <jo@x>"))
    );
    assert_eq!(
        one("EXPOSE 80/tcp  ${P}"),
        InstructionKind::Expose(vec![s("80/tcp"), s("${P}")])
    );
    assert_eq!(
        one("VOLUME /a /b"),
        InstructionKind::Volume(vec![s("/a"), s("/b")])
    );
    assert_eq!(
        one("VOLUME [\"/a b\"]"),
        InstructionKind::Volume(vec![s("/a b")])
    );
    let errs: &[(&str, &str)] = &[
        ("ARG", "ARG requires at least one argument"),
        ("ARG =1", "ARG names can not be blank"),
        ("USER", "USER requires exactly one argument"),
        ("WORKDIR", "WORKDIR requires exactly one argument"),
        ("EXPOSE", "EXPOSE requires at least one argument"),
        (
            "VOLUME [\"\"]",
            "VOLUME specified can not be an empty string",
        ),
        ("RUNN echo", "unknown instruction: RUNN"),
        ("frob x", "unknown instruction: FROB"),
    ];
    for (src, want) in errs {
        assert_eq!(
            error(&format!("FROM scratch\n{src}\n")),
            (2, s(want)),
            "{src:?}"
        );
    }
}

#[test]
fn add_and_copy() {
    match one("COPY --chown=1:2 --chmod=755 --link --exclude=*.md --exclude=x --parents a b/ /dst/")
    {
        InstructionKind::Copy(c) => {
            assert_eq!(c.chown.as_deref(), Some("1:2"));
            assert_eq!(c.chmod.as_deref(), Some("755"));
            assert!(c.link && c.parents && !c.json);
            assert_eq!(c.exclude, vec![s("*.md"), s("x")]);
            assert_eq!(c.sources, vec![s("a"), s("b/")]);
            assert_eq!(c.dest, "/dst/");
        }
        k => panic!("{k:?}"),
    }
    match one("COPY [\"a b\", \"/x y/\"]") {
        InstructionKind::Copy(c) => {
            assert!(c.json);
            assert_eq!(c.sources, vec![s("a b")]);
            assert_eq!(c.dest, "/x y/");
        }
        k => panic!("{k:?}"),
    }
    match one("ADD --checksum=sha256:abc --keep-git-dir=true https://x/y.tar /") {
        InstructionKind::Add(c) => {
            assert_eq!(c.checksum.as_deref(), Some("sha256:abc"));
            assert!(c.keep_git_dir);
            assert_eq!(c.sources, vec![s("https://x/y.tar")]);
        }
        k => panic!("{k:?}"),
    }
    let errs: &[(&str, &str)] = &[
        (
            "COPY a",
            "COPY requires at least two arguments, but only one was provided. Destination could not be determined",
        ),
        ("ADD --from=x a b", "Unknown flag: from"),
        ("COPY --from a b", "Missing a value on flag: from"),
        (
            "COPY --link=maybe a b",
            "Expecting boolean value for flag link, not: maybe",
        ),
        (
            "COPY --chown=1 --chown=2 a b",
            "Duplicate flag specified: chown",
        ),
    ];
    for (src, want) in errs {
        assert_eq!(
            error(&format!("FROM scratch\n{src}\n")),
            (2, s(want)),
            "{src:?}"
        );
    }
}

#[test]
fn run_flags_and_mounts() {
    let run = |src: &str| match one(src) {
        InstructionKind::Run(r) => r,
        k => panic!("{k:?}"),
    };
    let r = run(
        "RUN --mount=type=cache,target=/root/.cache --mount=target=/src,source=.,from=build,rw --network=none --security=insecure make",
    );
    assert_eq!(r.network.as_deref(), Some("none"));
    assert_eq!(r.security.as_deref(), Some("insecure"));
    assert_eq!(r.command, Some(Command::Shell(s("make"))));
    assert_eq!(
        r.mounts,
        vec![
            RunMount::Cache {
                target: s("/root/.cache"),
                id: Some(s("/root/.cache")),
                from: None,
                source: None,
                sharing: Some(s("shared")),
                readonly: false,
                mode: None,
                uid: None,
                gid: None,
            },
            RunMount::Bind {
                target: s("/src"),
                source: Some(s(".")),
                from: Some(s("build")),
                readwrite: true
            },
        ]
    );
    let r = run(
        "RUN --mount=type=secret,id=tok,mode=0400,required --mount=type=secret,target=/etc/key --mount=type=tmpfs,dst=/t,size=64m --mount=type=cache,id=x,target=/c,sharing=locked,ro,uid=1000 --mount=target=/r cat /run/secrets/tok",
    );
    assert_eq!(
        r.mounts,
        vec![
            RunMount::Secret {
                id: Some(s("tok")),
                target: Some(s("/run/secrets/tok")),
                required: true,
                mode: Some(0o400),
                uid: None,
                gid: None
            },
            RunMount::Secret {
                id: Some(s("key")),
                target: Some(s("/etc/key")),
                required: false,
                mode: None,
                uid: None,
                gid: None
            },
            RunMount::Tmpfs {
                target: s("/t"),
                size: Some(64 << 20)
            },
            RunMount::Cache {
                target: s("/c"),
                id: Some(s("x")),
                from: None,
                source: None,
                sharing: Some(s("locked")),
                readonly: true,
                mode: None,
                uid: Some(1000),
                gid: None,
            },
            RunMount::Bind {
                target: s("/r"),
                source: None,
                from: None,
                readwrite: false
            },
        ]
    );
    let errs: &[(&str, &str)] = &[
        (
            "RUN --mount=type=foo,target=/x a",
            "unsupported mount type \"foo\"",
        ),
        (
            "RUN --mount=type=bind,target=/x,mode=0700 a",
            "mode not allowed for \"bind\" type mounts",
        ),
        ("RUN --mount=type=cache a", "mount target is required"),
        (
            "RUN --mount=type=secret a",
            "invalid secret mount. one of source, target required",
        ),
        (
            "RUN --mount=type=bind,target=/x,bogus a",
            "invalid field 'bogus' must be a key=value pair",
        ),
        (
            "RUN --mount=type=bind,target=/x,foo=1 a",
            "unexpected key 'foo' in 'foo=1'",
        ),
        (
            "RUN --network=bridge2 a",
            "unsupported network mode \"bridge2\"",
        ),
        ("RUN --bogus a", "Unknown flag: bogus"),
    ];
    for (src, want) in errs {
        assert_eq!(
            error(&format!("FROM scratch\n{src}\n")),
            (2, s(want)),
            "{src:?}"
        );
    }
}

#[test]
fn onbuild() {
    match one("ONBUILD RUN echo hi") {
        InstructionKind::Onbuild(t) => {
            assert_eq!(t.original, "RUN echo hi");
            assert_eq!(
                t.kind,
                InstructionKind::Run(Run {
                    command: Some(Command::Shell(s("echo hi"))),
                    ..Run::default()
                })
            );
        }
        k => panic!("{k:?}"),
    }
    match one("onbuild copy --chown=1 . /app") {
        InstructionKind::Onbuild(t) => assert!(
            matches!(t.kind, InstructionKind::Copy(ref c) if c.chown.as_deref() == Some("1"))
        ),
        k => panic!("{k:?}"),
    }
    let errs: &[(&str, &str)] = &[
        (
            "ONBUILD ONBUILD RUN x",
            "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
        ),
        ("ONBUILD from x", "FROM isn't allowed as an ONBUILD trigger"),
        (
            "ONBUILD MAINTAINER x",
            "MAINTAINER isn't allowed as an ONBUILD trigger",
        ),
        ("ONBUILD", "ONBUILD requires at least one argument"),
        ("ONBUILD RUNN x", "unknown instruction: RUNN"),
    ];
    for (src, want) in errs {
        assert_eq!(
            error(&format!("FROM scratch\n{src}\n")),
            (2, s(want)),
            "{src:?}"
        );
    }
}

#[test]
fn healthcheck() {
    assert_eq!(
        one("HEALTHCHECK NONE"),
        InstructionKind::Healthcheck(Healthcheck {
            none: true,
            ..Healthcheck::default()
        })
    );
    assert_eq!(
        one(
            "HEALTHCHECK --interval=5s --timeout=3s --start-period=1s --start-interval=1s --retries=3 CMD curl -f http://x/"
        ),
        InstructionKind::Healthcheck(Healthcheck {
            none: false,
            command: Some(Command::Shell(s("curl -f http://x/"))),
            interval: Some(s("5s")),
            timeout: Some(s("3s")),
            start_period: Some(s("1s")),
            start_interval: Some(s("1s")),
            retries: Some(s("3")),
        })
    );
    assert_eq!(
        one("HEALTHCHECK cmd [\"true\"]"),
        InstructionKind::Healthcheck(Healthcheck {
            command: Some(Command::Exec(vec![s("true")])),
            ..Healthcheck::default()
        })
    );
    let errs: &[(&str, &str)] = &[
        ("HEALTHCHECK NONE x", "HEALTHCHECK NONE takes no arguments"),
        (
            "HEALTHCHECK FOO x",
            "Unknown type \"FOO\" in HEALTHCHECK (try CMD)",
        ),
        (
            "HEALTHCHECK CMD",
            "Unknown type \"CMD\" in HEALTHCHECK (try CMD)",
        ),
        (
            "HEALTHCHECK --retries=-1 CMD x",
            "--retries must be at least 1 (not -1)",
        ),
        ("HEALTHCHECK", "HEALTHCHECK requires at least one argument"),
    ];
    for (src, want) in errs {
        assert_eq!(
            error(&format!("FROM scratch\n{src}\n")),
            (2, s(want)),
            "{src:?}"
        );
    }
}

#[test]
fn heredocs() {
    let ins = stage0(
        "FROM scratch\nRUN <<EOF\necho $HOME\n  indented\nEOF\nRUN <<-'END' bash\n\tsecond\n\t\tthird\n\tEND\nRUN python3 <<EOF\nprint(1)\nEOF\nRUN cat <<A <<\"B\" > out\na\nA\nb\nB\nCOPY <<one <<two /dst/\n1\none\n2\ntwo\nCMD done\n",
    );
    let runs: Vec<&Run> = ins
        .iter()
        .filter_map(|i| match &i.kind {
            InstructionKind::Run(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(runs.len(), 4);
    assert_eq!(runs[0].command, Some(Command::Shell(s("<<EOF"))));
    assert_eq!(
        runs[0].heredocs,
        vec![Heredoc {
            name: s("EOF"),
            content: s("echo $HOME\n  indented\n"),
            expand: true,
            chomp: false
        }]
    );
    assert_eq!(
        runs[1].heredocs,
        vec![Heredoc {
            name: s("END"),
            content: s("second\nthird\n"),
            expand: false,
            chomp: true
        }]
    );
    assert_eq!(runs[2].command, Some(Command::Shell(s("python3 <<EOF"))));
    assert_eq!(runs[2].heredocs[0].content, "print(1)\n");
    assert_eq!(
        runs[3].heredocs,
        vec![
            Heredoc {
                name: s("A"),
                content: s("a\n"),
                expand: true,
                chomp: false
            },
            Heredoc {
                name: s("B"),
                content: s("b\n"),
                expand: false,
                chomp: false
            },
        ]
    );
    match &ins[4].kind {
        InstructionKind::Copy(c) => {
            assert!(c.sources.is_empty());
            assert_eq!(c.dest, "/dst/");
            assert_eq!(
                c.heredocs
                    .iter()
                    .map(|h| (h.name.as_str(), h.content.as_str()))
                    .collect::<Vec<_>>(),
                vec![("one", "1\n"), ("two", "2\n")]
            );
        }
        k => panic!("{k:?}"),
    }
    assert_eq!(ins[5].line, 23);
    assert_eq!(ins[5].kind, InstructionKind::Cmd(Command::Shell(s("done"))));
    // `<<` in a quoted string, and in instructions without heredocs, is not a heredoc.
    let ins = stage0("FROM scratch\nRUN echo '<<EOF'\nCMD cat <<EOF\n");
    assert_eq!(ins.len(), 2);
    assert!(matches!(&ins[0].kind, InstructionKind::Run(r) if r.heredocs.is_empty()));
    assert_eq!(
        error("FROM scratch\nRUN <<EOF\nno end\n"),
        (2, s("unterminated heredoc"))
    );
}

#[test]
fn file_level_errors() {
    assert_eq!(
        error(""),
        (0, s("the Dockerfile (Dockerfile) cannot be empty"))
    );
    assert_eq!(
        error("# only a comment\n\n"),
        (0, s("file with no instructions"))
    );
    assert_eq!(
        parse_named("\n", "Dockerfile.dev")
            .map_err(|e| e.to_string())
            .err()
            .as_deref(),
        Some("failed to parse Dockerfile.dev: file with no instructions")
    );
    assert_eq!(
        error("RUN x\n"),
        (1, s("no build stage in current context"))
    );
    assert_eq!(
        error("FROM\n"),
        (1, s("FROM requires either one or three arguments"))
    );
    assert_eq!(
        error("FROM a b\n"),
        (1, s("FROM requires either one or three arguments"))
    );
    assert_eq!(
        error("FROM a AS 1x\n"),
        (
            1,
            s(
                "invalid name for build stage: \"1x\", name can't start with a number or contain symbols"
            )
        )
    );
    assert_eq!(
        error("FROM a AS x\nFROM b AS X\n"),
        (2, s("duplicate stage name \"x\""))
    );
    assert_eq!(error("FROM --bogus=1 a\n"), (1, s("Unknown flag: bogus")));
    let e = parse("FROM a\n\nRUNN x\n").expect_err("unknown");
    assert_eq!(
        e.to_string(),
        "dockerfile parse error line 3: unknown instruction: RUNN"
    );
}

#[test]
fn flag_extraction() {
    let cases: &[(&str, &[&str], &str)] = &[
        ("--a=1 --b rest of line", &["--a=1", "--b"], "rest of line"),
        ("--a=\"x y\" z", &["--a=x y"], "z"),
        ("-- --notflag", &[], "--notflag"),
        ("plain", &[], "plain"),
        ("--only", &["--only"], ""),
        ("--x='' y", &["--x="], "y"),
    ];
    for (line, flags, rest) in cases {
        let (r, f) = extract_flags(line);
        assert_eq!(
            (r.trim(), f.iter().map(String::as_str).collect::<Vec<_>>()),
            (*rest, flags.to_vec()),
            "{line:?}"
        );
    }
}

#[test]
fn from_lines_and_parser_warnings_as_dockerd_prints_them() {
    let df = parse(
        "from  --platform=$BUILDPLATFORM busybox as Build\nRUN a \\\n\n  && b\nFROM \\\n  build\n",
    )
    .expect("parse");
    // `Step n/m : ...` shows the FROM line as written
    assert_eq!(
        df.stages[0].original,
        "from  --platform=$BUILDPLATFORM busybox as Build"
    );
    assert_eq!(df.stages[1].original, "FROM   build");
    assert_eq!(
        df.warnings,
        vec![
            s("[WARNING]: Empty continuation line found in:\n    RUN a   && b"),
            s("[WARNING]: Empty continuation lines will become errors in a future release."),
        ]
    );
    assert!(
        parse("FROM a\nRUN b \\\n  c\n")
            .expect("parse")
            .warnings
            .is_empty()
    );
}

#[test]
fn whole_file_errors_name_the_file_given() {
    let e = parse_named("", "Dockerfile.dev").expect_err("empty");
    assert_eq!(
        e.to_string(),
        "the Dockerfile (Dockerfile.dev) cannot be empty"
    );
    let e = parse_named("# only\n\n", "ci/Dockerfile").expect_err("comments");
    assert_eq!(
        e.to_string(),
        "failed to parse ci/Dockerfile: file with no instructions"
    );
}
