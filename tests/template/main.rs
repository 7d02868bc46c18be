//! Static checks of the deployment templates (no AWS access):
//!
//! * every function's `BuildProperties.Binary` is a `[[bin]]` of Cargo.toml;
//! * `rules/*.yaml` and template.yaml agree (names, resource types, triggers, parameters
//!   and defaults, for the account rules, the organization rules and the remediation);
//! * IAM stays least-privilege (no wildcard actions, no KMS action on `Resource: "*"` except
//!   the two AWS cannot scope, read-only KMS for evaluators, no destructive KMS anywhere);
//! * the Automation document sends exactly the payload the rotation handler accepts;
//! * cfn-lint accepts both templates.
//!
//! CloudFormation short forms (`!Ref`, `!Sub`, `!GetAtt`, `!If`, ...) arrive from serde_yaml
//! as `Value::Tagged`; the helpers in `support` also accept the long `{"Fn::...": ...}` forms.
//!
//! One test binary, one module per topic (one binary keeps link time down):
//! `support` (loading, YAML/CloudFormation and IAM helpers), `cfn` (a small CloudFormation
//! evaluator), `rules` (binaries, rules/ ↔ template.yaml), `iam` (least privilege, who may
//! read and invoke), `rotation_role`, `remediation` (the Automation document's contract),
//! `logs_alerts`, `network` (reaching the HSM), `requests` (who may ask for a rotation, for
//! 25 and 300 workload accounts), `deployment` (an order a person can follow; inputs) and
//! `lint` (checkov, advisories, cfn-lint).

mod cfn;
mod deployment;
mod iam;
mod lint;
mod logs_alerts;
mod member_role;
mod network;
mod remediation;
mod requests;
mod retirement;
mod rotation_role;
mod rules;
mod support;
