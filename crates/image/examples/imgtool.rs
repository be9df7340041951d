//! Drive an image store by hand (debugging and comparisons with a real Docker):
//! `imgtool <data-root> load <file>|save <out> <name>...|import <file> [ref]|ls|rm <name>|history <name>`
use std::fs::File;
use std::path::Path;

use berth_image::{ImageStore, ImportOptions, NoUsage, RemoveOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: imgtool <data-root> load|save|import|ls|rm|history ...");
        std::process::exit(2);
    }
    let store = ImageStore::open(Path::new(&args[0]))?;
    match args[1].as_str() {
        "load" => {
            let mut f = File::open(&args[2])?;
            for i in store.load(&mut f, &mut |_| {})? {
                let tags: Vec<String> = i.tags.iter().map(|t| t.familiar()).collect();
                println!("Loaded {} {}", i.id, tags.join(" "));
            }
        }
        "save" => {
            let mut out = File::create(&args[2])?;
            store.save(&args[3..], &mut out)?;
        }
        "import" => {
            let mut f = File::open(&args[2])?;
            let opts = ImportOptions {
                reference: args
                    .get(3)
                    .map(|r| berth_types::Reference::parse_tagged(r))
                    .transpose()?,
                ..Default::default()
            };
            println!("{}", store.import(&mut f, opts, &mut |_| {})?);
        }
        "ls" => {
            for i in store.list()? {
                let tags: Vec<String> = i.repo_tags.iter().map(|t| t.familiar()).collect();
                println!("{} {} {}", i.id, i.size, tags.join(","));
            }
        }
        "rm" => {
            for e in store.remove(&args[2], RemoveOptions::default(), &NoUsage)? {
                println!("{e:?}");
            }
        }
        "history" => {
            let img = store.lookup(&args[2])?;
            for h in store.history(&img.id)? {
                println!("{:?} {} {:?} {}", h.id, h.size, h.created_by, h.comment);
            }
        }
        other => return Err(format!("unknown command {other}").into()),
    }
    Ok(())
}
