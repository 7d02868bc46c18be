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
