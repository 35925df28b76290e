//! Admission: what a GraphQL request may cost, decided before any work.
//!
//! A document is measured in time linear in its size, on every endpoint,
//! before async-graphql validates or runs it (its own checks walk every
//! path through the fragments, which is exponential in a hostile
//! document). A request is refused when a fragment spread names no
//! fragment, fragments spread each other in a cycle, it has more fragment
//! spreads than the limit, one of its operations selects more fields than
//! the complexity limit once every fragment is expanded, or an argument or
//! variable holds a NUL character or nests deeper than [`MAX_VALUE_DEPTH`].
//!
//! What it measures — the root fields the chosen operation runs, each
//! counted as often as it runs (aliases and fragments included) — decides
//! which schema serves the request and what it costs against the public
//! call limits.

use std::collections::HashMap;

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationDefinition, OperationType, Selection,
    SelectionSet,
};
use async_graphql::{Name, Variables};
use async_graphql_value::{ConstValue, Value};

/// How deep a value (an argument or a variable) may nest.
pub(crate) const MAX_VALUE_DEPTH: usize = 64;

/// What the chosen operation of an admitted request will run.
#[derive(Debug, Default)]
pub(crate) struct Shape {
    /// The chosen operation's type; `None` when the request does not say
    /// which operation to run (async-graphql then answers the error).
    pub(crate) operation: Option<OperationType>,
    /// Each root field of the chosen operation with the number of times
    /// it runs.
    pub(crate) roots: HashMap<String, u64>,
}

impl Shape {
    /// Operations the request runs, `__typename` aside.
    pub(crate) fn operations(&self) -> u64 {
        self.roots
            .iter()
            .filter(|(n, _)| n.as_str() != "__typename")
            .map(|(_, n)| *n)
            .fold(0, u64::saturating_add)
    }
}

/// Limits that admission checks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Admission {
    /// Fields one operation may select, every fragment expanded.
    pub(crate) max_fields: usize,
    /// Fragment spreads one document may hold.
    pub(crate) max_fragment_spreads: usize,
}

/// Measures `request`'s document (parsed once, and kept in the request for
/// execution) or says why it is refused. A document that does not parse
/// is let through unmeasured: async-graphql answers the syntax error
/// without doing any work on it.
pub(crate) fn admit(
    request: &mut async_graphql::Request,
    limits: Admission,
) -> Result<Option<Shape>, String> {
    check_variables(&request.variables)?;
    let operation_name = request.operation_name.clone();
    let Ok(doc) = request.parsed_query() else {
        return Ok(None);
    };
    measure(doc, operation_name.as_deref(), limits).map(Some)
}

fn measure(
    doc: &ExecutableDocument,
    operation_name: Option<&str>,
    limits: Admission,
) -> Result<Shape, String> {
    let fragment_fields = fragments(doc, limits)?;
    let ops: Vec<(Option<&Name>, &OperationDefinition)> = match &doc.operations {
        DocumentOperations::Single(op) => vec![(None, &op.node)],
        DocumentOperations::Multiple(ops) => ops.iter().map(|(n, o)| (Some(n), &o.node)).collect(),
    };
    for (name, op) in &ops {
        check_values_in(&op.selection_set.node)?;
        for v in &op.variable_definitions {
            if let Some(d) = &v.node.default_value {
                check_const(&d.node)?;
            }
        }
        let n = fields(&op.selection_set.node, &fragment_fields);
        if n > limits.max_fields as u64 {
            let which = name
                .map(|n| format!("the operation {n}"))
                .unwrap_or_else(|| "the operation".into());
            return Err(format!(
                "{which} selects {n} fields once its fragments are expanded; the limit is {}",
                limits.max_fields
            ));
        }
    }
    let chosen = match (&doc.operations, operation_name) {
        (DocumentOperations::Single(op), _) => Some(&op.node),
        (DocumentOperations::Multiple(ops), Some(n)) => ops.get(&Name::new(n)).map(|o| &o.node),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            ops.values().next().map(|o| &o.node)
        }
        (DocumentOperations::Multiple(_), None) => None,
    };
    let mut shape = Shape::default();
    if let Some(op) = chosen {
        shape.operation = Some(op.ty);
        roots(doc, &op.selection_set.node, &mut shape.roots);
    }
    Ok(shape)
}

/// Checks the fragments (every spread names one, no cycles, not too many
/// spreads) and returns the number of fields each expands to.
fn fragments(doc: &ExecutableDocument, limits: Admission) -> Result<HashMap<Name, u64>, String> {
    let mut spreads = 0usize;
    let mut edges: HashMap<&Name, Vec<&Name>> = HashMap::new();
    let mut all_sets: Vec<&SelectionSet> = doc
        .operations
        .iter()
        .map(|(_, o)| &o.node.selection_set.node)
        .collect();
    for (name, f) in &doc.fragments {
        check_values_in(&f.node.selection_set.node)?;
        let mut named = Vec::new();
        spreads_in(&f.node.selection_set.node, &mut |s| named.push(s));
        edges.insert(name, named);
        all_sets.push(&f.node.selection_set.node);
    }
    for set in all_sets {
        let mut unknown = None;
        spreads_in(set, &mut |s| {
            spreads += 1;
            if !doc.fragments.contains_key(s) {
                unknown = Some(s.clone());
            }
        });
        if let Some(s) = unknown {
            return Err(format!("the fragment {s} is spread but not defined"));
        }
    }
    if spreads > limits.max_fragment_spreads {
        return Err(format!(
            "the document spreads fragments {spreads} times; the limit is {}",
            limits.max_fragment_spreads
        ));
    }
    // Depth-first, iteratively: a fragment on the current path that is
    // reached again is a cycle. Fields are summed in post-order, so each
    // fragment is counted once and the whole walk is linear.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        OnPath,
        Done,
    }
    let mut mark: HashMap<&Name, Mark> = HashMap::new();
    let mut counts: HashMap<Name, u64> = HashMap::new();
    for start in doc.fragments.keys() {
        if mark.contains_key(start) {
            continue;
        }
        let mut stack: Vec<(&Name, usize)> = vec![(start, 0)];
        mark.insert(start, Mark::OnPath);
        while let Some((name, next)) = stack.last().copied() {
            let children = edges.get(name).map(Vec::as_slice).unwrap_or(&[]);
            if let Some(child) = children.get(next) {
                if let Some(top) = stack.last_mut() {
                    top.1 += 1;
                }
                match mark.get(child) {
                    Some(Mark::OnPath) => {
                        return Err(format!(
                            "the fragment {child} spreads itself (through {name}); fragments must not form cycles"
                        ));
                    }
                    Some(Mark::Done) => {}
                    None => {
                        mark.insert(child, Mark::OnPath);
                        stack.push((child, 0));
                    }
                }
                continue;
            }
            stack.pop();
            mark.insert(name, Mark::Done);
            let n = doc
                .fragments
                .get(name)
                .map(|f| fields(&f.node.selection_set.node, &counts))
                .unwrap_or(0);
            counts.insert(name.clone(), n);
        }
    }
    Ok(counts)
}

/// Calls `f` for each fragment spread directly in `set` (inline fragments
/// and fields looked into, named fragments not followed).
fn spreads_in<'a>(set: &'a SelectionSet, f: &mut impl FnMut(&'a Name)) {
    let mut stack = vec![set];
    while let Some(set) = stack.pop() {
        for sel in &set.items {
            match &sel.node {
                Selection::Field(x) => stack.push(&x.node.selection_set.node),
                Selection::InlineFragment(i) => stack.push(&i.node.selection_set.node),
                Selection::FragmentSpread(s) => f(&s.node.fragment_name.node),
            }
        }
    }
}

/// Fields selected by `set`, named fragments counted as `fragments` says.
fn fields(set: &SelectionSet, fragments: &HashMap<Name, u64>) -> u64 {
    let mut n = 0u64;
    let mut stack = vec![set];
    while let Some(set) = stack.pop() {
        for sel in &set.items {
            match &sel.node {
                Selection::Field(x) => {
                    n = n.saturating_add(1);
                    stack.push(&x.node.selection_set.node);
                }
                Selection::InlineFragment(i) => stack.push(&i.node.selection_set.node),
                Selection::FragmentSpread(s) => {
                    n = n.saturating_add(
                        fragments
                            .get(&s.node.fragment_name.node)
                            .copied()
                            .unwrap_or(0),
                    );
                }
            }
        }
    }
    n
}

/// Counts the root fields of `set` into `out`,
/// through inline fragments and named fragments. Called only on a
/// document whose fragments were checked, so it ends; the total it counts
/// is bounded by the field limit.
fn roots(doc: &ExecutableDocument, set: &SelectionSet, out: &mut HashMap<String, u64>) {
    for sel in &set.items {
        match &sel.node {
            Selection::Field(x) => {
                let e = out.entry(x.node.name.node.to_string()).or_insert(0);
                *e = e.saturating_add(1);
            }
            Selection::InlineFragment(i) => roots(doc, &i.node.selection_set.node, out),
            Selection::FragmentSpread(s) => {
                if let Some(f) = doc.fragments.get(&s.node.fragment_name.node) {
                    roots(doc, &f.node.selection_set.node, out);
                }
            }
        }
    }
}

/// Checks every argument value written in `set`'s fields and directives.
fn check_values_in(set: &SelectionSet) -> Result<(), String> {
    let mut stack = vec![set];
    while let Some(set) = stack.pop() {
        for sel in &set.items {
            for d in sel.node.directives() {
                for (_, v) in &d.node.arguments {
                    check_value(&v.node)?;
                }
            }
            match &sel.node {
                Selection::Field(x) => {
                    for (_, v) in &x.node.arguments {
                        check_value(&v.node)?;
                    }
                    stack.push(&x.node.selection_set.node);
                }
                Selection::InlineFragment(i) => stack.push(&i.node.selection_set.node),
                Selection::FragmentSpread(_) => {}
            }
        }
    }
    Ok(())
}

fn check_variables(v: &Variables) -> Result<(), String> {
    for (name, value) in v.iter() {
        check_str(name.as_str())?;
        check_const(value)?;
    }
    Ok(())
}

fn check_str(s: &str) -> Result<(), String> {
    if s.contains('\0') {
        Err("a string holds a NUL character (\\u0000), which no field accepts".into())
    } else {
        Ok(())
    }
}

fn too_deep() -> String {
    format!("a value nests deeper than {MAX_VALUE_DEPTH} levels")
}

/// Checks a value as written in the document (it may name variables).
fn check_value(v: &Value) -> Result<(), String> {
    let mut stack = vec![(v, 1usize)];
    while let Some((v, depth)) = stack.pop() {
        if depth > MAX_VALUE_DEPTH {
            return Err(too_deep());
        }
        match v {
            Value::String(s) => check_str(s)?,
            Value::Enum(s) => check_str(s.as_str())?,
            Value::List(items) => stack.extend(items.iter().map(|x| (x, depth + 1))),
            Value::Object(m) => {
                for (k, x) in m {
                    check_str(k.as_str())?;
                    stack.push((x, depth + 1));
                }
            }
            Value::Variable(_)
            | Value::Null
            | Value::Number(_)
            | Value::Boolean(_)
            | Value::Binary(_) => {}
        }
    }
    Ok(())
}

/// Checks a value given in full (a variable, a default).
fn check_const(v: &ConstValue) -> Result<(), String> {
    let mut stack = vec![(v, 1usize)];
    while let Some((v, depth)) = stack.pop() {
        if depth > MAX_VALUE_DEPTH {
            return Err(too_deep());
        }
        match v {
            ConstValue::String(s) => check_str(s)?,
            ConstValue::Enum(s) => check_str(s.as_str())?,
            ConstValue::List(items) => stack.extend(items.iter().map(|x| (x, depth + 1))),
            ConstValue::Object(m) => {
                for (k, x) in m {
                    check_str(k.as_str())?;
                    stack.push((x, depth + 1));
                }
            }
            ConstValue::Null
            | ConstValue::Number(_)
            | ConstValue::Boolean(_)
            | ConstValue::Binary(_) => {}
        }
    }
    Ok(())
}

/// Checks JSON given outside GraphQL (a download's input, a page's query)
/// the way variables are checked.
pub(crate) fn check_json(v: &serde_json::Value) -> Result<(), String> {
    let mut stack = vec![(v, 1usize)];
    while let Some((v, depth)) = stack.pop() {
        if depth > MAX_VALUE_DEPTH {
            return Err(too_deep());
        }
        match v {
            serde_json::Value::String(s) => check_str(s)?,
            serde_json::Value::Array(items) => stack.extend(items.iter().map(|x| (x, depth + 1))),
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    check_str(k)?;
                    stack.push((x, depth + 1));
                }
            }
            serde_json::Value::Null | serde_json::Value::Number(_) | serde_json::Value::Bool(_) => {
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Admission = Admission {
        max_fields: 2000,
        max_fragment_spreads: 100,
    };

    fn run(q: &str) -> Result<Shape, String> {
        let mut r = async_graphql::Request::new(q);
        admit(&mut r, LIMITS).map(|s| s.expect("parses"))
    }

    #[test]
    fn cycles_and_unknown_fragments_are_refused() {
        for q in [
            "query{...A} fragment A on Query{...B} fragment B on Query{...A}",
            "query{...A} fragment A on Query{viewer{kind} ...A}",
            "query{x} fragment A on Query{a{...B}} fragment B on Query{b{... on Query{...A}}}",
        ] {
            let e = run(q).unwrap_err();
            assert!(e.contains("cycles"), "{q}: {e}");
        }
        let e = run("query{...Nope}").unwrap_err();
        assert!(e.contains("Nope"), "{e}");
    }

    #[test]
    fn exponential_fan_out_is_counted_expanded() {
        // F0 spreads F1 twice, F1 spreads F2 twice, …: 2^26 fields.
        let mut q = String::from("query{...F0}");
        for i in 0..26 {
            q.push_str(&format!(
                " fragment F{i} on Query{{...F{} ...F{}}}",
                i + 1,
                i + 1
            ));
        }
        q.push_str(" fragment F26 on Query{__typename}");
        let limits = Admission {
            max_fragment_spreads: 1000,
            ..LIMITS
        };
        let mut r = async_graphql::Request::new(q);
        let e = admit(&mut r, limits).unwrap_err();
        assert!(e.contains("67108864 fields"), "{e}");
    }

    #[test]
    fn aliases_and_fragments_count_each_root_field_run() {
        let s = run(
            "query{a:scan(code:\"1\"){v} b:scan(code:\"2\"){v} ...F ... on Query{scan(code:\"3\"){v}} __typename} fragment F on Query{c:scan(code:\"4\"){v}}",
        )
        .unwrap();
        assert_eq!(s.roots["scan"], 4);
        assert_eq!(s.operations(), 4);
    }

    #[test]
    fn nul_characters_and_deep_values_are_refused() {
        assert!(
            run("{scan(code:\"a\\u0000b\"){v}}")
                .unwrap_err()
                .contains("NUL")
        );
        let deep = format!("{{f(x:{}1{})}}", "[".repeat(100), "]".repeat(100));
        assert!(run(&deep).unwrap_err().contains("deeper"));
        let mut r = async_graphql::Request::new("query($v:String){f(x:$v)}")
            .variables(Variables::from_json(serde_json::json!({"v": "a\u{0}b"})));
        assert!(admit(&mut r, LIMITS).unwrap_err().contains("NUL"));
    }

    #[test]
    fn too_many_spreads_are_refused() {
        let mut q = String::from("query{");
        for _ in 0..101 {
            q.push_str("...F ");
        }
        q.push_str("} fragment F on Query{__typename}");
        assert!(run(&q).unwrap_err().contains("101 times"));
    }
}
