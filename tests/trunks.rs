//! SIP trunks through the real binary: `[[trunk]]` in `switchboard check`,
//! outbound registration to a carrier played by a test UA on 127.0.0.x,
//! inbound calls from a trunk's address, outbound calls through trunks.

mod binary;

use binary::Workdir;

const EXT: &str = "[storage]\nbackend = \"memory\"\n\n[[extension]]\nid = \"1001\"\npassword = \"Vq7-zK2p-Lm9w\"\ndid = \"+15550001001\"\noutbound = true\n";

#[test]
fn check_accepts_trunks_and_names_bad_keys_with_file_and_line() {
    let w = Workdir::with_file(
        "switchboard.toml",
        &format!(
            "{EXT}\n[[trunk]]\nname = \"carrier\"\nhost = \"127.0.0.1\"\nport = 5080\nusername = \"office\"\npassword = \"s3cret-pw\"\nregister = true\nmatch = [\"127.0.0.0/8\"]\n"
        ),
    );
    let out = w.run(&["check"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stdout.contains("1 trunk"), "{}", out.stdout);

    let key_pem = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n";
    for (trunk, needle, at) in [
        (
            "[[trunk]]\nname = \"carrier\"\nhost = \"127.0.0.1\"\nregistr = true\n",
            "unknown field `registr`",
            "switchboard.toml:13:",
        ),
        (
            "[[trunk]]\nname = \"carrier\"\nhost = \"127.0.0.1\"\nregister = true\n",
            "trunk carrier: register = true needs username and password",
            "switchboard.toml:13:",
        ),
        (
            "[[trunk]]\nname = \"carrier\"\nhost = \"127.0.0.1\"\nmatch = [\"10.0.0.300\"]\n",
            "trunk carrier: match: \"10.0.0.300\" is not an IP address or network",
            "switchboard.toml:13:",
        ),
        (
            "[[trunk]]\nname = \"carrier\"\nhost = \"127.0.0.1\"\nstir_shaken = { key = \"nope.pem\", x5u = \"https://c.example/c.pem\" }\n",
            "stir_shaken.key: cannot read",
            "switchboard.toml:13:",
        ),
        (
            "[[trunk]]\nname = \"carrier\"\nhost = \"127.0.0.1\"\nstir_shaken = { key = \"stir.pem\", x5u = \"ftp://c.example/c.pem\" }\n",
            "stir_shaken.x5u: \"ftp://c.example/c.pem\" is not an https URL",
            "switchboard.toml:13:",
        ),
        (
            "[[trunk]]\nname = \"carrier\"\nhost = \"127.0.0.1\"\ncontext = \"from-nowhere\"\nmatch = [\"127.0.0.2\"]\n",
            "trunk carrier: context \"from-nowhere\" has no dialplan",
            "switchboard.toml:13:",
        ),
    ] {
        let w = Workdir::with_file("switchboard.toml", &format!("{EXT}\n{trunk}"));
        w.write("stir.pem", key_pem);
        let out = w.run(&["check"]);
        assert!(!out.status.success(), "{trunk:?}: {}", out.stdout);
        let line = out.one_error_line();
        assert!(line.contains(needle), "{trunk:?}: {line}");
        assert!(line.contains(at), "{trunk:?}: {line}");
    }
}
