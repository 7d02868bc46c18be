//! Logs, alerts and dropped evaluations.

use crate::cfn::*;
use crate::support::*;

// ---------------------------------------------------------------------------------------
// (f) logs, alerts, dropped evaluations

#[test]
fn functions_log_to_explicit_log_groups_with_retention() {
    for (name, min_days) in [(WORKLOAD_TEMPLATE, 90u32), (SECURITY_TEMPLATE, 1827)] {
        let t = template(name);
        for (id, _) in function_binaries(&t) {
            let f = resource(&t, &id);
            let lg = ref_name(&f["Properties"]["LoggingConfig"]["LogGroup"])
                .unwrap_or_else(|| panic!("{name} {id}: LoggingConfig.LogGroup must !Ref a log group"));
            let g = resource(&t, lg);
            assert_eq!(g["Type"].as_str(), Some("AWS::Logs::LogGroup"), "{name} {id}: {lg}");
            // Kept when the stack is deleted or the group replaced (the audit trail), and
            // without a fixed name: a retained group with a fixed name makes the next create
            // of the stack fail ("already exists").
            for policy in ["DeletionPolicy", "UpdateReplacePolicy"] {
                assert_eq!(g[policy].as_str(), Some("Retain"), "{name} {lg}: {policy}");
            }
            assert!(g["Properties"]["LogGroupName"].is_null(), "{name} {lg}: no fixed LogGroupName");
            let days_param = ref_name(&g["Properties"]["RetentionInDays"]).expect("RetentionInDays from a parameter");
            let days: u32 = parameter_default(&t, days_param).unwrap().parse().unwrap();
            assert!(days >= min_days, "{name} {lg}: default retention {days} < {min_days} days");
            let key = &g["Properties"]["KmsKeyId"];
            let (f_, inner) = intrinsic(key).unwrap_or_else(|| panic!("{name} {lg}: KmsKeyId must be optional (!If)"));
            assert_eq!(f_, "If", "{name} {lg}: KmsKeyId");
            let parts = seq(inner);
            assert!(ref_name(&parts[1]).is_some() && is_no_value(&parts[2]), "{name} {lg}: KmsKeyId from a parameter");
        }
    }
}

/// Both alert topics are encrypted by default: with the stack's own key, whose policy lets
/// exactly the services that publish to the topic use it.
#[test]
fn alert_topics_are_encrypted_by_default() {
    for (name, publishers) in [
        (WORKLOAD_TEMPLATE, vec!["cloudwatch.amazonaws.com", "events.amazonaws.com"]),
        (SECURITY_TEMPLATE, vec!["cloudwatch.amazonaws.com", "events.amazonaws.com"]),
    ] {
        let t = template(name);
        let cfn = if name == SECURITY_TEMPLATE {
            Cfn::security(&t, &[])
        } else {
            Cfn::new(&t, &[("SecurityAccountId", "111111111111")])
        };
        let topics = cfn.resources_of_type("AWS::SNS::Topic");
        assert_eq!(topics.len(), 1, "{name}");
        let key = topics[0].1["Properties"]["KmsMasterKeyId"].as_str().unwrap_or_default().to_string();
        let key_id = key.strip_prefix("ref:").unwrap_or_else(|| panic!("{name}: topic key {key:?} is the stack's"));
        let k = cfn.eval(resource(&t, key_id));
        assert_eq!(k["Type"].as_str(), Some("AWS::KMS::Key"), "{name}");
        assert_eq!(k["Properties"]["EnableKeyRotation"].as_bool(), Some(true), "{name}: key rotation");
        let mut services: Vec<String> = seq(&k["Properties"]["KeyPolicy"]["Statement"])
            .iter()
            .flat_map(|st| strings(&st["Principal"]["Service"]))
            .collect();
        services.sort();
        assert_eq!(services, publishers, "{name}: the services that publish");
    }
}

/// Every queue is encrypted at rest: a KMS key or SQS-managed encryption (checkov 3.3.30's
/// CKV_AWS_27 knows only the first; .checkov.yaml says why it is skipped).
#[test]
fn every_queue_is_encrypted() {
    for name in [WORKLOAD_TEMPLATE, SECURITY_TEMPLATE] {
        let t = template(name);
        for (id, q) in resources_of_type(&t, "AWS::SQS::Queue") {
            let p = &q["Properties"];
            assert!(
                !p["KmsMasterKeyId"].is_null() || p["SqsManagedSseEnabled"].as_bool() == Some(true),
                "{name} {id}: unencrypted queue"
            );
        }
    }
}

fn pattern_names_audit(cfn: &Cfn) -> bool {
    let want = format!("$.audit = \"{}\"", kms_rotation_guard::remediation::AUDIT);
    cfn.resources_of_type("AWS::Logs::MetricFilter")
        .iter()
        .all(|(_, f)| f["Properties"]["FilterPattern"].as_str().unwrap_or_default().contains(&want))
}

/// Issue 20: the security account hears of every remediation outcome and of the function's
/// errors and throttles. The metric filters match the audit line the code writes.
#[test]
fn rotation_outcomes_errors_and_throttles_are_alarmed() {
    let s = template(SECURITY_TEMPLATE);
    let cfn = Cfn::security(&s, &[]);
    let rotation_fn = function_for_binary(&s, ROTATION_BINARY);
    let log_group = ref_name(&resource(&s, &rotation_fn)["Properties"]["LoggingConfig"]["LogGroup"]).unwrap();
    let mut metrics = BTreeMap::new();
    for (id, f) in cfn.resources_of_type("AWS::Logs::MetricFilter") {
        let p = &f["Properties"];
        assert_eq!(p["LogGroupName"].as_str(), Some(format!("ref:{log_group}").as_str()), "{id}");
        let pattern = p["FilterPattern"].as_str().unwrap();
        let outcome = pattern
            .split("$.outcome = \"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_else(|| panic!("{id}: pattern {pattern} names no outcome"));
        assert!(pattern.contains("$.audit = \"remediation\""), "{id}: {pattern}");
        let m = &seq(&p["MetricTransformations"])[0];
        metrics.insert(
            outcome.to_string(),
            (m["MetricNamespace"].as_str().unwrap().to_string(), m["MetricName"].as_str().unwrap().to_string()),
        );
    }
    let outcomes: BTreeSet<&str> = metrics.keys().map(String::as_str).collect();
    let metered: BTreeSet<&str> = kms_rotation_guard::remediation::METERED_OUTCOMES.into_iter().collect();
    assert_eq!(outcomes, metered, "one metric per outcome the code writes");
    assert!(pattern_names_audit(&cfn), "the filters match the code's audit field");
    let alarms = cfn.resources_of_type("AWS::CloudWatch::Alarm");
    let alarmed = |ns: &str, metric: &str| {
        alarms.iter().any(|(_, a)| {
            let p = &a["Properties"];
            p["Namespace"].as_str() == Some(ns)
                && p["MetricName"].as_str() == Some(metric)
                && strings(&p["AlarmActions"]) == ["ref:AlertTopic"]
        })
    };
    for metric in ["Errors", "Throttles"] {
        assert!(alarmed("AWS/Lambda", metric), "no alarm on the rotation function's {metric}");
        let a = alarms.iter().find(|(_, a)| a["Properties"]["MetricName"].as_str() == Some(metric)).unwrap();
        assert_eq!(
            seq(&a.1["Properties"]["Dimensions"])[0]["Value"].as_str(),
            Some(format!("ref:{rotation_fn}").as_str())
        );
    }
    for outcome in ["refused", "reimported"] {
        let (ns, metric) = &metrics[outcome];
        assert!(alarmed(ns, metric), "no alarm on {outcome}");
    }
    // The topic: TLS only, and alarms of this stack may publish.
    let policy = cfn.resources_of_type("AWS::SNS::TopicPolicy");
    let sts = seq(&policy[0].1["Properties"]["PolicyDocument"]["Statement"]).to_vec();
    assert!(sts.iter().any(|st| st["Effect"].as_str() == Some("Deny")
        && st["Condition"]["Bool"]["aws:SecureTransport"].as_str() == Some("false")));
    // Failed requests: Lambda's on-failure destination and the rule's dead-letter queue,
    // alarmed.
    let invoke = cfn.resources_of_type("AWS::Lambda::EventInvokeConfig");
    assert_eq!(invoke.len(), 1);
    let p = &invoke[0].1["Properties"];
    assert_eq!(p["FunctionName"].as_str(), Some(format!("ref:{rotation_fn}").as_str()));
    assert_eq!(p["DestinationConfig"]["OnFailure"]["Destination"].as_str(), Some("RequestDeadLetterQueue.Arn"));
    let can_send = cfn
        .role_statements(ROTATION_ROLE)
        .iter()
        .any(|st| actions_of(st) == ["sqs:SendMessage"] && strings(&st["Resource"]) == ["RequestDeadLetterQueue.Arn"]);
    assert!(can_send, "the rotation role sends failed requests to the queue");
    assert!(alarms.iter().any(|(_, a)| seq(&a["Properties"]["Dimensions"])
        .iter()
        .any(|d| d["Value"].as_str() == Some("RequestDeadLetterQueue.QueueName"))));
}

#[test]
fn alert_topic_denies_non_tls_and_takes_a_kms_key() {
    let w = template(WORKLOAD_TEMPLATE);
    let cfn = Cfn::new(
        &w,
        &[("SecurityAccountId", "111111111111"), ("AlertTopicKmsKeyArn", "arn:aws:kms:eu-west-1:1:key/x")],
    );
    let topics = cfn.resources_of_type("AWS::SNS::Topic");
    assert_eq!(topics.len(), 1);
    let (topic, t) = &topics[0];
    assert_eq!(t["Properties"]["KmsMasterKeyId"].as_str(), Some("arn:aws:kms:eu-west-1:1:key/x"), "topic KMS key");
    let policies = cfn.resources_of_type("AWS::SNS::TopicPolicy");
    let deny =
        policies.iter().flat_map(|(_, p)| seq(&p["Properties"]["PolicyDocument"]["Statement"]).to_vec()).find(|s| {
            s["Effect"].as_str() == Some("Deny")
                && s["Condition"]["Bool"]["aws:SecureTransport"].as_str() == Some("false")
                && s["Principal"].as_str() == Some("*")
                && strings(&s["Resource"]).contains(&format!("ref:{topic}"))
        });
    let deny = deny.expect("a Deny for aws:SecureTransport=false on the topic");
    assert!(actions_of(&deny).iter().any(|a| a == "sns:*" || a == "sns:Publish"), "deny covers publishing");
}

#[test]
fn dropped_evaluations_reach_a_queue_and_an_alarm() {
    let w = template(WORKLOAD_TEMPLATE);
    let cfn = Cfn::new(&w, &[("SecurityAccountId", "111111111111")]);
    let binaries = function_binaries(&w);
    let mut queues = BTreeSet::new();
    for id in binaries.keys() {
        let f = resource(&w, id);
        let dlq = function_property(&w, f, "DeadLetterQueue");
        let on_failure = &function_property(&w, f, "EventInvokeConfig")["DestinationConfig"]["OnFailure"];
        let target = if !dlq.is_null() {
            assert_eq!(dlq["Type"].as_str(), Some("SQS"), "{id}: DLQ type");
            get_att(&dlq["TargetArn"])
        } else {
            get_att(&on_failure["Destination"])
        };
        let (q, _) = target.unwrap_or_else(|| panic!("{id}: no DeadLetterQueue or OnFailure destination"));
        assert_eq!(resource(&w, &q)["Type"].as_str(), Some("AWS::SQS::Queue"), "{id}: {q}");
        let role = function_role(f);
        let can_send = cfn.role_statements(&role).iter().any(|s| {
            actions_of(s).iter().any(|a| a == "sqs:SendMessage")
                && strings(&s["Resource"]).contains(&format!("{q}.Arn"))
        });
        assert!(can_send, "{id}: role {role} cannot send to {q}");
        queues.insert(q);
    }
    for q in queues {
        let alarmed = cfn.resources_of_type("AWS::CloudWatch::Alarm").into_iter().any(|(_, a)| {
            let p = &a["Properties"];
            p["Namespace"].as_str() == Some("AWS/SQS")
                && p["MetricName"].as_str() == Some("ApproximateNumberOfMessagesVisible")
                && seq(&p["Dimensions"]).iter().any(|d| d["Value"].as_str() == Some(&format!("{q}.QueueName")))
                && strings(&p["AlarmActions"]).iter().any(|x| x.starts_with("ref:"))
        });
        assert!(alarmed, "no alarm with an action on the depth of {q}");
    }
}
