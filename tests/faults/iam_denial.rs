//! IAM denial: a denied key read is never COMPLIANT.

use super::*;

/// Actions a change evaluation of a same-account key needs (docs/deployment.md, "IAM each handler
/// needs"), plus the sweep's for good measure.
const NEEDED: &[&str] = &[
    "config:PutEvaluations",
    "config:GetResourceConfigHistory",
    "config:GetComplianceDetailsByConfigRule",
    "kms:DescribeKey",
    "kms:GetKeyRotationStatus",
    "kms:ListResourceTags",
    "kms:ListKeyRotations",
    "sts:AssumeRole",
    "dynamodb:ListTables",
    "dynamodb:DescribeTable",
];

/// Creates an IAM user allowed `NEEDED` minus `missing` (moto answers with Resource "*"
/// only: its KMS authorisation is not resource-scoped), with access keys; returns them.
/// boto3 comes with moto in .tools/venv, and the product has no IAM client.
fn iam_user(moto: &Moto, name: &str, missing: &str) -> Credentials {
    let actions: Vec<&str> = NEEDED.iter().copied().filter(|a| *a != missing).collect();
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]
    });
    let script = r#"
import json, sys, boto3
endpoint, name, policy = sys.argv[1:4]
iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                   aws_access_key_id="testing", aws_secret_access_key="testing")
iam.create_user(UserName=name)
iam.put_user_policy(UserName=name, PolicyName="evaluator", PolicyDocument=policy)
k = iam.create_access_key(UserName=name)["AccessKey"]
print(json.dumps({"id": k["AccessKeyId"], "secret": k["SecretAccessKey"]}))
"#;
    let out = Command::new(tool("venv", "python"))
        .args(["-c", script, &moto.endpoint, name, &policy.to_string()])
        .output()
        .expect("run python");
    assert!(out.status.success(), "creating {name}: {}", String::from_utf8_lossy(&out.stderr));
    let k: Value = serde_json::from_slice(&out.stdout).unwrap();
    Credentials::new(k["id"].as_str().unwrap(), k["secret"].as_str().unwrap(), None, None, "iam-user")
}

/// From here on moto authorises every request against IAM (`/moto-api/reset-auth`: the
/// number of requests still allowed without auth).
fn enforce_iam(moto: &Moto) {
    let out = Command::new("curl")
        .args(["-s", "-f", "-X", "POST", "-H", "Content-Type: text/plain", "--data", "0"])
        .arg(format!("{}/moto-api/reset-auth", moto.endpoint))
        .output()
        .expect("curl");
    assert!(out.status.success(), "reset-auth: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_key_read_is_never_compliant() {
    let started = Instant::now();
    let moto = Moto::start();
    let today = ymd(Utc::now());
    // Same-account keys: one imported (judged by its tag), one AWS_KMS without automatic
    // rotation (judged by the age of its material: created today). Both fresh, so only a
    // denial can fail them.
    let (wl, _) = workload(&moto.endpoint).await;
    let wl_ddb = seed::key(&wl, "workload-dynamodb", OriginType::External, &[("LastRotationDate", &today)]).await;
    let wl_kms = seed::key(&wl, "workload-kms", OriginType::AwsKms, &[("LastRotationDate", &today)]).await;
    let keys = seed::SampleKeys::of(&[("workload-dynamodb", &wl_ddb)]);
    let kms_arn = format!("arn:aws:kms:{REGION}:{WORKLOAD}:key/{wl_kms}");
    seed::table(&wl, "carts", Some(&keys.key_arn(WORKLOAD, "workload-dynamodb"))).await;
    seed::table(&wl, "orders", Some(&kms_arn)).await;

    let users: Vec<(&str, Credentials)> = ["kms:ListResourceTags", "kms:DescribeKey", "kms:ListKeyRotations", ""]
        .into_iter()
        .map(|missing| {
            let name = if missing.is_empty() {
                "evaluator-full".to_string()
            } else {
                format!("evaluator-no-{}", &missing[4..])
            };
            (missing, iam_user(&moto, &name, missing))
        })
        .collect();
    enforce_iam(&moto);

    let carts = keys.event("dynamodb-table-lowercase-fields.json");
    let orders = {
        let mut e = carts.clone();
        let mut inv: Value = serde_json::from_str(e["invokingEvent"].as_str().unwrap()).unwrap();
        let item = &mut inv["configurationItem"];
        item["resourceId"] = "orders".into();
        item["resourceName"] = "orders".into();
        let c = &mut item["configuration"];
        let sse =
            c.as_object_mut().unwrap().iter_mut().find(|(k, _)| k.eq_ignore_ascii_case("ssedescription")).unwrap().1;
        let arn =
            sse.as_object_mut().unwrap().iter_mut().find(|(k, _)| k.eq_ignore_ascii_case("kmsmasterkeyarn")).unwrap().1;
        *arn = kms_arn.clone().into();
        e["invokingEvent"] = inv.to_string().into();
        e
    };
    let mut combos = Vec::new();
    for allow in [false, true] {
        for verify in [true, false] {
            for max in ["365", "36500"] {
                for expiry in ["30", "0"] {
                    for role in ["kms-rotation-guard-key-reader", ""] {
                        combos.push(serde_json::json!({
                            "allowAwsManagedKeys": allow.to_string(),
                            "verifyTagAgainstKms": verify.to_string(),
                            "maxKeyAgeDays": max,
                            "expiryWarningDays": expiry,
                            "keyReaderRoleName": role,
                        }));
                    }
                }
            }
        }
    }

    let mut runs = 0;
    for (missing, creds) in &users {
        let aws = Aws::new(sdk_config(&moto.endpoint, creds.clone()).await);
        for (what, event) in [("carts (EXTERNAL key)", &carts), ("orders (AWS_KMS key, no auto-rotation)", &orders)] {
            for params in &combos {
                let mut payload = event.clone();
                payload["ruleParameters"] = params.to_string().into();
                let out = handler::handle(&aws, rule::DYNAMODB, payload, Utc::now(), None)
                    .await
                    .unwrap_or_else(|e| panic!("{what} without {missing:?}, {params}: {e}"));
                runs += 1;
                assert_eq!(out.evaluations.len(), 1);
                let e = &out.evaluations[0];
                let verify = params["verifyTagAgainstKms"] == "true";
                let aws_kms = what.starts_with("orders");
                match *missing {
                    // The control: with every permission the fresh tag is COMPLIANT, so
                    // the NON_COMPLIANT below is the denial's doing.
                    "" => assert_eq!(e.compliance, Compliance::Compliant, "{what} {params}: {e:?}"),
                    // Without the rotation history, verifyTagAgainstKms=false is the
                    // documented way out ("or set verifyTagAgainstKms=false").
                    // ... but not for an AWS_KMS key: its material's age comes only from
                    // the rotation history, whatever the tag says.
                    "kms:ListKeyRotations" if !verify && !aws_kms => {
                        assert_eq!(e.compliance, Compliance::Compliant, "{what} {params}: {e:?}")
                    }
                    // An AWS_KMS key is judged by KMS's own dates; its tags are not needed.
                    "kms:ListResourceTags" if aws_kms => {
                        assert_eq!(e.compliance, Compliance::Compliant, "{what} {params}: {e:?}")
                    }
                    action => {
                        assert_eq!(e.compliance, Compliance::NonCompliant, "{what} without {action}, {params}: {e:?}");
                        assert!(
                            e.annotation.contains(action) && e.annotation.contains("denied"),
                            "{what} without {action}, {params}: {:?}",
                            e.annotation
                        );
                    }
                }
            }
        }
        println!("{:<24} → e.g. {:?}", if missing.is_empty() { "(all allowed)" } else { missing }, {
            let mut payload = carts.clone();
            payload["ruleParameters"] = combos[0].to_string().into();
            handler::handle(&aws, rule::DYNAMODB, payload, Utc::now(), None).await.unwrap().evaluations[0]
                .annotation
                .clone()
        });
    }
    println!(
        "IAM denial: {runs} evaluations over {} parameter combinations in {:.1} s",
        combos.len(),
        started.elapsed().as_secs_f64()
    );
}
