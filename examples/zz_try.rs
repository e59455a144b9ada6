#[path = "../tests/support/mod.rs"]
mod support;
use support::{Dovecot, Layout};
fn main() {
    let src = Dovecot::builder().layout(Layout::Classic).start();
    let dst = Dovecot::builder().layout(Layout::Modern).start();
    let (u, p) = src.fresh_user("alice");
    dst.add_user(&u, &p);
    let (u2, p2) = src.fresh_user("bob");
    dst.add_user(&u2, &p2);
    let dir = std::path::Path::new("/tmp/try");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("migration.toml"), format!("[source]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\n\n[destination]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\n\n[accounts]\ncsv = \"accounts.csv\"\n", src.port(), dst.port())).unwrap();
    std::fs::write(dir.join("accounts.csv"), format!("source_user,source_password,destination_user,destination_password\n{u},{p},{u},{p}\n{u2},WRONGPW,{u2},{p2}\n")).unwrap();
    println!("ports {} {}", src.port(), dst.port());
    let bin = std::env::args().nth(1).unwrap();
    for args in [vec!["check"], vec!["plan"], vec!["apply", "--auto-approve"]] {
        println!("\n$ mailshift {}", args.join(" "));
        let out = std::process::Command::new(&bin)
            .args(&args)
            .current_dir(dir)
            .output()
            .unwrap();
        println!(
            "{}--- stderr ---\n{}(status {:?})",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            out.status.code()
        );
    }
}
