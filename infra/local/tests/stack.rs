//! The deployable stack and the code agree: every HTTP route the template gives API Gateway is
//! in the OpenAPI file and every operation of the file has a route; every detail-type the code
//! publishes is routed by a rule of the template.

use engagement::events::DETAIL_TYPES;
use pyramid::routing::{Router, TEMPLATE};
use serde_json::json;
use serde_norway::Value as Yaml;
use std::collections::BTreeSet;

fn template_routes() -> BTreeSet<(String, String)> {
    let template: Yaml = serde_norway::from_str(TEMPLATE).expect("the template is YAML");
    let mut routes = BTreeSet::new();
    for (_, resource) in template["Resources"].as_mapping().expect("resources") {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        for (_, event) in resource["Properties"]["Events"].as_mapping().into_iter().flatten() {
            if event["Type"].as_str() == Some("HttpApi") {
                let method = event["Properties"]["Method"].as_str().expect("a method").to_lowercase();
                let path = event["Properties"]["Path"].as_str().expect("a path").to_string();
                routes.insert((method, path));
            }
        }
    }
    routes
}

fn openapi_operations() -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../functions/api/openapi.yaml")).expect("the OpenAPI file");
    let document: serde_json::Value = serde_norway::from_str(&text).expect("YAML");
    let mut operations = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                operations.insert((method.to_string(), path.clone()));
            }
        }
    }
    operations
}

#[test]
fn every_route_of_the_template_is_in_the_openapi_file_and_back() {
    let (mut routes, operations) = (template_routes(), openapi_operations());
    // The dashboard's page and assets are not API operations: exactly these two, outside /v1.
    let static_routes: BTreeSet<(String, String)> = routes.iter().filter(|(_, path)| !path.starts_with("/v1/")).cloned().collect();
    assert_eq!(
        static_routes,
        BTreeSet::from([
            ("get".to_string(), "/".to_string()),
            ("get".to_string(), "/assets/{asset}".to_string())
        ])
    );
    routes.retain(|route| !static_routes.contains(route));
    assert!(routes.len() >= 9, "{routes:?}");
    let only_template: Vec<_> = routes.difference(&operations).collect();
    let only_openapi: Vec<_> = operations.difference(&routes).collect();
    assert!(
        only_template.is_empty(),
        "routes API Gateway serves that the OpenAPI file lacks: {only_template:?}"
    );
    assert!(
        only_openapi.is_empty(),
        "operations of the OpenAPI file with no route: {only_openapi:?}"
    );
}

#[test]
fn every_published_detail_type_is_routed_by_a_rule() {
    let router = Router::shipped().expect("the template routes");
    for detail_type in DETAIL_TYPES {
        let envelope = json!({"version": "0", "id": "1", "source": "engagement", "detail-type": detail_type,
                              "account": "000000000000", "time": "2026-01-01T00:00:00Z", "region": "local",
                              "resources": [], "detail": {"schema_version": 1}});
        assert!(
            !router.targets(&envelope).is_empty(),
            "{detail_type} is published but no rule routes it"
        );
    }
}
