//! deploy/kubernetes/ (issue 10): the kustomizations render, and the rendered Jobs say what
//! the README promises. Rendered with `kubectl kustomize` when kubectl is on the machine
//! (`.ci/run` installs it where Debian has it); otherwise the raw YAML files are read and
//! the kustomization's resources followed by this test (the reason is printed).
//!
//! Checked: the apply Job is an Indexed Job whose `--shard` argument parses with
//! mailshift's own command line for every index and names the same N as `completions`
//! (N = 8 × P by default), `backoffLimitPerIndex` retries shards alone, reports go to the
//! volume; secrets come only from the Secret `mailshift-accounts` (no Secret object, no
//! literal secret values, the CSV path inside the Secret's mount); the plan Job never
//! applies; the container build file is multi-stage, non-root, with CA certificates and no
//! secrets copied in.

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser as _;
use serde_json::Value;

const SECRET_NAME: &str = "mailshift-accounts";
const INDEX: &str = "$(JOB_COMPLETION_INDEX)";

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes")
}

/// YAML → JSON values (the manifests use maps, lists, strings, numbers, booleans).
fn to_json(y: &yaml_rust2::Yaml) -> Value {
    use yaml_rust2::Yaml;
    match y {
        Yaml::Real(s) => s
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Array(a) => Value::Array(a.iter().map(to_json).collect()),
        Yaml::Hash(h) => Value::Object(
            h.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        other => panic!("unexpected YAML key {other:?}"),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Yaml::Null => Value::Null,
        other => panic!("unexpected YAML node {other:?}"),
    }
}

fn parse_docs(text: &str, what: &str) -> Vec<Value> {
    yaml_rust2::YamlLoader::load_from_str(text)
        .unwrap_or_else(|e| panic!("{what} is not valid YAML: {e}"))
        .iter()
        .map(to_json)
        .filter(|v| !v.is_null())
        .collect()
}

/// Whether `kubectl kustomize` can be run here.
fn kubectl() -> bool {
    Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The objects a kustomization produces.
fn render(overlay: &str) -> Vec<Value> {
    let dir = deploy_dir().join(overlay);
    if kubectl() {
        let out = Command::new("kubectl")
            .arg("kustomize")
            .arg(&dir)
            .output()
            .expect("run kubectl kustomize");
        assert!(
            out.status.success(),
            "kubectl kustomize {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        return parse_docs(&String::from_utf8_lossy(&out.stdout), "kubectl's output");
    }
    eprintln!(
        "kubectl is not installed: checking the raw YAML of `{}` instead of its \
         `kubectl kustomize` rendering (install kubectl, e.g. Debian's `kubernetes-client`, \
         to render it)",
        dir.display()
    );
    raw_resources(&dir)
}

/// Follows a kustomization's `resources` and `configMapGenerator` by hand (no hash
/// suffixes, no patches: the kustomizations here use neither).
fn raw_resources(dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("kustomization.yaml")).expect("kustomization");
    let k = parse_docs(&text, "kustomization.yaml").remove(0);
    let mut out = Vec::new();
    for r in k["resources"].as_array().into_iter().flatten() {
        let path = dir.join(r.as_str().expect("resource path"));
        if path.is_dir() {
            out.extend(raw_resources(&path));
        } else {
            let text = std::fs::read_to_string(&path).expect("resource file");
            out.extend(parse_docs(&text, &path.display().to_string()));
        }
    }
    for g in k["configMapGenerator"].as_array().into_iter().flatten() {
        let mut data = serde_json::Map::new();
        for f in g["files"].as_array().into_iter().flatten() {
            let f = f.as_str().unwrap();
            let text = std::fs::read_to_string(dir.join(f)).expect("generated file");
            data.insert(f.to_string(), Value::String(text));
        }
        out.push(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": g["name"]}, "data": data
        }));
    }
    out
}

fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind} expected: {docs:#?}");
    found[0]
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("a list expected: {v}"))
        .iter()
        .map(|s| s.as_str().expect("a string").to_string())
        .collect()
}

/// The value after `flag` in `args`.
fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1).map(String::as_str)
}

/// The mount path of the volume `volume` in the container (the first one).
fn mounts(container: &Value, volume: &str) -> Vec<(String, Option<String>)> {
    container["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["name"] == volume)
        .map(|m| {
            (
                m["mountPath"].as_str().unwrap().to_string(),
                m["subPath"].as_str().map(str::to_string),
            )
        })
        .collect()
}

/// Every object under `v` (depth first), to look for secrets wherever they hide.
fn walk<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    out.push(v);
    match v {
        Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
        Value::Object(o) => o.values().for_each(|x| walk(x, out)),
        _ => {}
    }
}

/// Secrets only from the Secret: no Secret object in the rendering (it is created by the
/// admin from the CSV), every secret reference names it, no literal secret-looking env
/// values, the config in the ConfigMap names no password, and the CSV path in
/// migration.toml lies inside the Secret's mount.
fn assert_secrets_only_from_the_secret(docs: &[Value], job: &Value) {
    assert!(
        docs.iter().all(|d| d["kind"] != "Secret"),
        "the rendering must not create a Secret (its data would live in the repository)"
    );
    let mut nodes = Vec::new();
    for d in docs {
        walk(d, &mut nodes);
    }
    for n in &nodes {
        if let Some(s) = n.get("secretKeyRef") {
            assert_eq!(s["name"], SECRET_NAME, "{n}");
        }
        if let Some(s) = n.get("secret") {
            assert_eq!(s["secretName"], SECRET_NAME, "{n}");
        }
        if let (Some(name), Some(value)) = (n.get("name"), n.get("value")) {
            let name = name.as_str().unwrap_or("").to_uppercase();
            assert!(
                !["PASSWORD", "SECRET", "TOKEN"]
                    .iter()
                    .any(|w| name.contains(w)),
                "a literal value for `{name}`: {value}; take it from the Secret"
            );
        }
    }
    let config_map = one(docs, "ConfigMap");
    let toml = config_map["data"]["migration.toml"]
        .as_str()
        .expect("migration.toml in the ConfigMap");
    for line in toml.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
        let key = line.split('=').next().unwrap_or("").trim();
        assert!(
            !key.contains("password") || key == "password-env" || key == "password-file",
            "the ConfigMap's config holds a password: `{line}`"
        );
    }
    // The CSV comes from the Secret's mount.
    let csv = toml
        .lines()
        .find_map(|l| l.trim().strip_prefix("csv = "))
        .expect("[accounts] csv")
        .trim_matches('"');
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    let volume = job["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["secret"]["secretName"] == SECRET_NAME)
        .expect("a volume from the Secret");
    let (mount, _) = mounts(container, volume["name"].as_str().unwrap()).remove(0);
    let item = volume["secret"]["items"][0]["path"].as_str().unwrap();
    assert_eq!(
        csv,
        format!("{mount}/{item}"),
        "the CSV is the Secret's file"
    );
}

/// The config file the container reads is the ConfigMap's.
fn assert_config_from_the_config_map(docs: &[Value], job: &Value, args: &[String]) {
    let config_map = one(docs, "ConfigMap");
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    let volume = job["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["configMap"]["name"] == config_map["metadata"]["name"])
        .expect("a volume from the generated ConfigMap");
    let (mount, _) = mounts(container, volume["name"].as_str().unwrap()).remove(0);
    assert_eq!(
        flag(args, "--config"),
        Some(format!("{mount}/migration.toml").as_str()),
        "{args:?}"
    );
}

/// The container's args of the apply Job, as written (with `$(JOB_COMPLETION_INDEX)`).
pub(crate) fn apply_job_args() -> (Vec<String>, u64) {
    let docs = render("apply");
    let job = one(&docs, "Job");
    let args = strings(&job["spec"]["template"]["spec"]["containers"][0]["args"]);
    let n = job["spec"]["completions"].as_u64().expect("completions");
    (args, n)
}

#[test]
fn the_apply_job_is_an_indexed_job_whose_shards_agree_with_completions() {
    let docs = render("apply");
    let job = one(&docs, "Job");
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"], "Indexed", "{job:#}");
    let n = spec["completions"].as_u64().expect("completions");
    let p = spec["parallelism"].as_u64().expect("parallelism");
    assert_eq!(n, 8 * p, "N = 8 × P by default (N = {n}, P = {p})");
    assert!(
        spec["backoffLimitPerIndex"].as_u64().unwrap_or(0) >= 1,
        "a failed shard retries alone: {job:#}"
    );
    assert_eq!(spec["template"]["spec"]["restartPolicy"], "Never");
    // SIGTERM is an orderly stop (report written, exit 143): give it time.
    assert!(
        spec["template"]["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap_or(30)
            >= 60,
        "{job:#}"
    );
    let containers = spec["template"]["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let args = strings(&containers[0]["args"]);
    assert_eq!(args[0], "apply", "{args:?}");
    assert!(args.contains(&"--auto-approve".to_string()), "{args:?}");
    assert_eq!(
        flag(&args, "--shard"),
        Some(format!("{INDEX}/{n}").as_str()),
        "--shard names the same N as completions: {args:?}"
    );
    let report = flag(&args, "--report").expect("--report");
    assert_eq!(report, format!("/reports/shard-{INDEX}.json"));
    // The reports directory is on the volume, not in the pod.
    let report_mounts: Vec<_> = containers[0]["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["mountPath"] == "/reports")
        .collect();
    assert_eq!(report_mounts.len(), 1, "{job:#}");
    let volume_name = &report_mounts[0]["name"];
    let volume = spec["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| &v["name"] == volume_name)
        .unwrap();
    assert!(volume.get("persistentVolumeClaim").is_some(), "{volume}");
    assert!(
        docs.iter().any(|d| d["kind"] == "PersistentVolumeClaim"
            && d["metadata"]["name"] == volume["persistentVolumeClaim"]["claimName"]),
        "the claim is part of the rendering"
    );

    // Every index expands (as the kubelet does) to arguments mailshift's own parser takes,
    // and an index of N would be refused: the Job and the tool agree on N.
    let expand = |k: u64| -> Vec<String> {
        std::iter::once("mailshift".to_string())
            .chain(args.iter().map(|a| a.replace(INDEX, &k.to_string())))
            .collect()
    };
    for k in 0..n {
        let cli = mailshift::cli::Cli::try_parse_from(expand(k))
            .unwrap_or_else(|e| panic!("index {k}: {e}"));
        let shard = cli.global.shard.expect("--shard");
        assert_eq!((shard.index, shard.count), (k, n));
    }
    assert!(mailshift::cli::Cli::try_parse_from(expand(n)).is_err());

    // The state directory of migration.toml is on the volume too.
    let toml = one(&docs, "ConfigMap")["data"]["migration.toml"]
        .as_str()
        .unwrap()
        .to_string();
    let state_dir = toml
        .lines()
        .find_map(|l| l.trim().strip_prefix("dir = "))
        .expect("[state] dir")
        .trim_matches('"');
    let state_mounts = mounts(&containers[0], volume_name.as_str().unwrap());
    assert!(
        state_mounts.iter().any(|(path, _)| path == state_dir),
        "`[state] dir = {state_dir}` is on the volume: {state_mounts:?}"
    );

    assert_config_from_the_config_map(&docs, job, &args);
    assert_secrets_only_from_the_secret(&docs, job);

    // mailshift accepts the ConfigMap's config (strict parsing), with a CSV where the
    // Secret would be.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("accounts.csv"),
        "source_user,source_password,destination_user,destination_password\na@x,p,b@y,q\n",
    )
    .unwrap();
    let local = toml.replace("\"/secrets/accounts.csv\"", "\"accounts.csv\"");
    assert_ne!(local, toml, "the CSV path is the Secret's");
    std::fs::write(dir.path().join("migration.toml"), local).unwrap();
    let settings = mailshift::settings::load(
        &dir.path().join("migration.toml"),
        &mailshift::settings::Selection::default(),
    )
    .unwrap_or_else(|e| panic!("the ConfigMap's migration.toml: {e}"));
    assert_eq!(settings.state_dir, Path::new(state_dir));
}

#[test]
fn the_plan_job_only_plans() {
    let docs = render("plan");
    let job = one(&docs, "Job");
    assert!(job["spec"].get("completionMode").is_none(), "{job:#}");
    let args = strings(&job["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert_eq!(args[0], "plan", "{args:?}");
    assert!(
        !args.iter().any(|a| a == "apply" || a == "--auto-approve"),
        "{args:?}"
    );
    let cli = mailshift::cli::Cli::try_parse_from(
        std::iter::once("mailshift".to_string()).chain(args.iter().cloned()),
    )
    .expect("the plan Job's args parse");
    assert!(matches!(cli.command, mailshift::cli::Command::Plan(_)));
    assert_config_from_the_config_map(&docs, job, &args);
    assert_secrets_only_from_the_secret(&docs, job);
}

#[test]
fn the_container_build_is_multi_stage_non_root_with_ca_certificates_and_no_secrets() {
    let path = deploy_dir().join("Containerfile");
    let text = std::fs::read_to_string(&path).expect("deploy/kubernetes/Containerfile");
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    let froms = lines.iter().filter(|l| l.starts_with("FROM ")).count();
    assert!(froms >= 2, "multi-stage: {froms} FROM lines");
    let user = lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("a numeric USER (Kubernetes' runAsNonRoot checks numbers)");
    assert_ne!(uid, 0, "non-root");
    assert!(text.contains("ca-certificates"), "CA certificates");
    for l in lines.iter().filter(|l| l.starts_with("COPY ")) {
        assert!(
            !l.contains(".csv")
                && !l.contains("migration.toml")
                && !l.starts_with("COPY . ")
                && !l.contains(" ./ ."),
            "only sources are copied into the image: `{l}`"
        );
    }
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("ENV ") && l.to_uppercase().contains("PASSWORD")),
        "no password in the image's environment"
    );
    // The apply Job runs the same user as the image.
    let docs = render("apply");
    let pod = &one(&docs, "Job")["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsUser"], u64::from(uid));
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
}
