//! A small CloudFormation evaluator and the statement helpers built on it.

use crate::support::*;

// ---------------------------------------------------------------------------------------
// A small CloudFormation evaluator: resolves a template for given parameter values, so the
// checks below see what CloudFormation would deploy (both branches of every `!If` are
// otherwise easy to get wrong).

pub(crate) const NO_VALUE: &str = "\u{0}NoValue";
pub(crate) const ACCOUNT: &str = "999999999999";
pub(crate) const REGION: &str = "eu-west-1";
/// The organization of the examples (security-account.yaml requires one).
pub(crate) const ORG: &str = "o-abcdefghij";

pub(crate) struct Cfn<'a> {
    pub(crate) t: &'a Value,
    pub(crate) params: BTreeMap<String, Value>,
    /// AWS::Region (REGION unless `in_region` says otherwise).
    pub(crate) region: String,
}

impl<'a> Cfn<'a> {
    /// The template with its parameter defaults, overridden by `overrides`
    /// (CommaDelimitedList values as "a,b").
    pub(crate) fn new(t: &'a Value, overrides: &[(&str, &str)]) -> Self {
        let mut params = BTreeMap::new();
        for (k, p) in t["Parameters"].as_mapping().expect("Parameters") {
            let k = k.as_str().unwrap().to_string();
            let given = overrides.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());
            let raw = given.or_else(|| scalar_string(&p["Default"]));
            let Some(raw) = raw else { continue };
            let v = if p["Type"].as_str().is_some_and(|ty| ty.contains("List")) {
                Value::Sequence(raw.split(',').map(|s| Value::String(s.to_string())).collect())
            } else {
                Value::String(raw)
            };
            params.insert(k, v);
        }
        for (n, _) in overrides {
            assert!(params.contains_key(*n), "no parameter {n}");
        }
        Cfn { t, params, region: REGION.into() }
    }

    /// The same deployment in another Region.
    pub(crate) fn in_region(mut self, region: &str) -> Self {
        self.region = region.into();
        self
    }

    pub(crate) fn var(&self, name: &str) -> Value {
        match name {
            "AWS::Partition" => Value::String("aws".into()),
            "AWS::Region" => Value::String(self.region.clone()),
            "AWS::AccountId" => Value::String(ACCOUNT.into()),
            "AWS::NoValue" => Value::String(NO_VALUE.into()),
            _ => {
                if let Some(v) = self.params.get(name) {
                    v.clone()
                } else {
                    assert!(!self.t["Resources"][name].is_null(), "Ref to unknown {name}");
                    Value::String(format!("ref:{name}"))
                }
            }
        }
    }

    pub(crate) fn condition(&self, name: &str) -> bool {
        let def = &self.t["Conditions"][name];
        assert!(!def.is_null(), "condition {name} missing");
        self.truth(def)
    }

    pub(crate) fn truth(&self, v: &Value) -> bool {
        let (f, inner) = intrinsic(v).unwrap_or_else(|| panic!("not a condition function: {v:?}"));
        let args = seq(inner);
        match f.as_str() {
            "Equals" => self.eval(&args[0]) == self.eval(&args[1]),
            "Not" => !self.truth(&args[0]),
            "And" => args.iter().all(|a| self.truth(a)),
            "Or" => args.iter().any(|a| self.truth(a)),
            "Condition" => self.condition(inner.as_str().unwrap()),
            // (Rules only.)
            "Contains" => seq(&self.eval(&args[0])).contains(&self.eval(&args[1])),
            "EachMemberEquals" => {
                let list = self.eval(&args[0]);
                let want = self.eval(&args[1]);
                seq(&list).iter().all(|m| *m == want)
            }
            other => panic!("condition function {other} not modelled"),
        }
    }

    pub(crate) fn active(&self, r: &Value) -> bool {
        r["Condition"].as_str().is_none_or(|c| self.condition(c))
    }

    /// A value as deployed: intrinsics resolved, AWS::NoValue entries dropped.
    pub(crate) fn eval(&self, v: &Value) -> Value {
        if let Some((f, inner)) = intrinsic(v) {
            let args = seq(inner);
            return match f.as_str() {
                "Ref" => self.var(inner.as_str().unwrap()),
                "GetAtt" => {
                    let (id, attr) = get_att(v).unwrap();
                    if attr == "DnsEntries" {
                        // An interface endpoint's DNS entries: "<hosted zone>:<name>", the
                        // endpoint's own regional name first.
                        let name = format!("vpce-{}.{}.vpce.amazonaws.com", id.to_ascii_lowercase(), self.region);
                        return Value::Sequence(vec![Value::String(format!("Z7HUB22UULQXV:{name}"))]);
                    }
                    Value::String(format!("{id}.{attr}"))
                }
                "Sub" => {
                    let (text, vars) = match inner {
                        Value::String(s) => (s.as_str(), None),
                        _ => (args[0].as_str().unwrap(), Some(&args[1])),
                    };
                    Value::String(self.sub(text, vars))
                }
                "Join" => {
                    let sep = args[0].as_str().unwrap();
                    let parts: Vec<String> = seq(&self.eval(&args[1]))
                        .iter()
                        .map(|p| p.as_str().unwrap_or_else(|| panic!("Join of {p:?}")).to_string())
                        .collect();
                    Value::String(parts.join(sep))
                }
                "Split" => {
                    let sep = args[0].as_str().unwrap();
                    let s = self.eval(&args[1]);
                    Value::Sequence(s.as_str().unwrap().split(sep).map(|x| Value::String(x.into())).collect())
                }
                "Select" => {
                    let i: usize = scalar_string(&self.eval(&args[0])).unwrap().parse().unwrap();
                    seq(&self.eval(&args[1]))[i].clone()
                }
                "If" => {
                    if self.condition(args[0].as_str().unwrap()) {
                        self.eval(&args[1])
                    } else {
                        self.eval(&args[2])
                    }
                }
                "Equals" | "Not" | "And" | "Or" | "Condition" | "EachMemberEquals" => Value::Bool(self.truth(v)),
                other => panic!("function {other} not modelled"),
            };
        }
        match v {
            Value::Mapping(m) => Value::Mapping(
                m.iter()
                    .map(|(k, x)| (k.clone(), self.eval(x)))
                    .filter(|(_, x)| x.as_str() != Some(NO_VALUE))
                    .collect(),
            ),
            Value::Sequence(s) => {
                Value::Sequence(s.iter().map(|x| self.eval(x)).filter(|x| x.as_str() != Some(NO_VALUE)).collect())
            }
            other => other.clone(),
        }
    }

    pub(crate) fn sub(&self, text: &str, vars: Option<&Value>) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(i) = rest.find("${") {
            out.push_str(&rest[..i]);
            let after = &rest[i + 2..];
            let j = after.find('}').expect("unclosed ${");
            let name = &after[..j];
            if let Some(lit) = name.strip_prefix('!') {
                out.push_str(&format!("${{{lit}}}"));
            } else {
                let local = vars.map(|m| &m[name]).filter(|x| !x.is_null());
                let v = match local {
                    Some(x) => self.eval(x),
                    None if name.contains('.') => Value::String(name.to_string()),
                    None => self.var(name),
                };
                out.push_str(&scalar_string(&v).unwrap_or_else(|| panic!("${{{name}}} is not a string: {v:?}")));
            }
            rest = &after[j + 1..];
        }
        out.push_str(rest);
        out
    }

    /// The security template with OrganizationId (required, no default) unless given.
    pub(crate) fn security(t: &'a Value, overrides: &[(&str, &str)]) -> Self {
        let mut o: Vec<(&str, &str)> = overrides.to_vec();
        if !o.iter().any(|(k, _)| *k == "OrganizationId") {
            o.push(("OrganizationId", ORG));
        }
        Cfn::new(t, &o)
    }

    /// Logical ids of every resource deployed with these parameters.
    pub(crate) fn active_ids(&self) -> BTreeSet<String> {
        resources(self.t).iter().filter(|(_, r)| self.active(r)).map(|(k, _)| k.as_str().unwrap().to_string()).collect()
    }

    /// Active resources of a type, evaluated.
    pub(crate) fn resources_of_type(&self, ty: &str) -> Vec<(String, Value)> {
        resources_of_type(self.t, ty)
            .into_iter()
            .filter(|(_, r)| self.active(r))
            .map(|(id, r)| (id.to_string(), self.eval(r)))
            .collect()
    }

    /// Every Allow statement of one role's inline policies, evaluated.
    pub(crate) fn role_statements(&self, role: &str) -> Vec<Value> {
        let r = resource(self.t, role);
        assert!(self.active(r), "{role} is not deployed with these parameters");
        let r = self.eval(r);
        seq(&r["Properties"]["Policies"])
            .iter()
            .flat_map(|p| seq(&p["PolicyDocument"]["Statement"]).to_vec())
            .filter(|s| s["Effect"].as_str() == Some("Allow"))
            .collect()
    }
}

pub(crate) fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Sequence(s) => s.iter().map(|x| scalar_string(x).expect("string")).collect(),
        Value::Null => vec![],
        other => vec![scalar_string(other).expect("string")],
    }
}

pub(crate) fn actions_of(st: &Value) -> Vec<String> {
    strings(&st["Action"])
}

/// Statements of `role` that allow `action`.
pub(crate) fn allowing<'s>(sts: &'s [Value], action: &str) -> Vec<&'s Value> {
    sts.iter().filter(|s| actions_of(s).iter().any(|a| a == action)).collect()
}

pub(crate) const ROTATION_ROLE: &str = "RotationRole";
pub(crate) const GUARD_TAG: &str = "kms-rotation-guard";
