// Package schemas owns jetmedia's wire contracts: one JSON Schema (draft 2020-12) per event type
// and version in events/, the shared envelope they reference, and a Validator that checks raw
// events against them. The schema files are the published contract for anything that reads the
// event log without Go (analytics, jq, other services); testdata/compat freezes one example of
// every type and version so a schema edit that would reject old events fails the tests.
//
// It imports the standard library and github.com/santhosh-tekuri/jsonschema/v6 only (its tests
// also import events). It must not import pipeline, projections, ingress, egress or NATS:
// validating an event needs nothing but its bytes.
//
// Imports: none
package schemas
