// Package devstack runs the groupbuy apps locally the way `dapr run -f dapr/dapr.yaml` would,
// without needing the Dapr CLI, and is shared by the dev launcher (tools/devrun) and the
// integration-test harness.
//
// The flow has three steps:
//
//  1. LoadRunFile parses a Dapr CLI multi-app run file into RunFile, merging `common` into
//     every app and resolving relative paths exactly as the CLI does.
//  2. NewPlan applies Options (output dir, port remapping, extra env, component metadata
//     overrides, an OTLP exporter, a subset of apps) and Plan.Write materializes the result:
//     an effective resources dir, an effective Dapr Configuration whose name-resolution
//     template follows the effective ports, and an effective run file with absolute paths
//     that the real `dapr run -f` also accepts. Materialize does both.
//  3. A Supervisor starts placement, scheduler, and every app with its daprd, waits until all
//     of them are ready, reports the first child that dies, and stops them all without
//     leaving orphans. It can also check (and optionally start) Redis and RabbitMQ.
//
// Everything binds 127.0.0.1. Name resolution uses the kubernetes resolver with a template
// that maps each app id to its sidecar's internal gRPC port on loopback, never mDNS.
package devstack
