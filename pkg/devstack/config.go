package devstack

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"strings"

	"gopkg.in/yaml.v3"
)

// nameResolver is the name-resolution component the effective Configuration uses. The
// kubernetes resolver with a template needs no Kubernetes: it renders the template for the
// target app id. mDNS, the self-hosted default, multicasts off the machine.
const nameResolver = "kubernetes"

// NameResolutionTemplate renders the kubernetes name resolver's template that maps every app's
// id to 127.0.0.1:<daprInternalGRPCPort>, in run-file order. Unknown ids resolve to a
// *.invalid host so that a call to an app missing from the run file fails fast and names it.
// dapr/config.yaml carries this template for dapr/dapr.yaml; a unit test keeps them equal.
func NameResolutionTemplate(apps []App) (string, error) {
	var b strings.Builder
	for i, a := range apps {
		if a.DaprInternalGRPCPort <= 0 {
			return "", fmt.Errorf("app %q: daprInternalGRPCPort must be set: name resolution maps app ids to it", a.AppID)
		}
		if strings.ContainsAny(a.AppID, "\"\\{}") {
			return "", fmt.Errorf("app id %q cannot be used in a name-resolution template", a.AppID)
		}
		if i == 0 {
			b.WriteString("{{if")
		} else {
			b.WriteString("{{else if")
		}
		fmt.Fprintf(&b, " eq .ID %q}}%s:%d", a.AppID, loopback, a.DaprInternalGRPCPort)
	}
	b.WriteString("{{else}}unknown-app-{{.ID}}.invalid:1{{end}}")
	return b.String(), nil
}

// ReadNameResolutionTemplate returns spec.nameResolution.configuration.template of a Dapr
// Configuration file.
func ReadNameResolutionTemplate(configPath string) (string, error) {
	data, err := os.ReadFile(configPath)
	if err != nil {
		return "", fmt.Errorf("read config: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return "", fmt.Errorf("parse %s: %w", configPath, err)
	}
	nr := mappingValue(mappingValue(documentRoot(&doc), "spec"), "nameResolution")
	tmpl := mappingValue(mappingValue(nr, "configuration"), "template")
	if tmpl == nil {
		return "", fmt.Errorf("%s: no spec.nameResolution.configuration.template", configPath)
	}
	return tmpl.Value, nil
}

// effectiveConfig rewrites a Dapr Configuration: the name resolver becomes the kubernetes
// resolver with the given template, and when otlpEndpoint is set, spec.tracing.otel exports
// spans to it over plain OTLP/HTTP (and a samplingRate of 0 or none becomes 1). Comments and
// every other setting are kept.
func effectiveConfig(src []byte, template, otlpEndpoint string) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, fmt.Errorf("parse config: %w", err)
	}
	root := documentRoot(&doc)
	if root == nil || root.Kind != yaml.MappingNode || scalar(mappingValue(root, "kind")) != "Configuration" {
		return nil, fmt.Errorf("not a Dapr Configuration (kind: Configuration)")
	}
	spec := ensureMapping(root, "spec")
	nr := ensureMapping(spec, "nameResolution")
	setMappingValue(nr, "component", stringNode(nameResolver))
	setMappingValue(ensureMapping(nr, "configuration"), "template", stringNode(template))

	if otlpEndpoint != "" {
		addr, err := otlpAddress(otlpEndpoint)
		if err != nil {
			return nil, err
		}
		otel := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Content: []*yaml.Node{
			stringNode("endpointAddress"), stringNode(addr),
			stringNode("isSecure"), {Kind: yaml.ScalarNode, Tag: "!!bool", Value: "false"},
			stringNode("protocol"), stringNode("http"),
		}}
		tracing := ensureMapping(spec, "tracing")
		setMappingValue(tracing, "otel", otel)
		if rate := scalar(mappingValue(tracing, "samplingRate")); rate == "" || rate == "0" {
			// A collector was asked for: trace (the file leaves tracing off without one).
			setMappingValue(tracing, "samplingRate", stringNode("1"))
		}
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	return buf.Bytes(), nil
}

// otlpAddress turns an OTLP endpoint, either host:port or a URL such as the usual
// OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318, into the host:port Dapr's
// tracing.otel.endpointAddress expects.
func otlpAddress(endpoint string) (string, error) {
	if !strings.Contains(endpoint, "://") {
		return endpoint, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", fmt.Errorf("otlp endpoint %q: %w", endpoint, err)
	}
	if u.Scheme == "https" {
		return "", fmt.Errorf("otlp endpoint %q: only plain http is supported locally", endpoint)
	}
	if u.Host == "" {
		return "", fmt.Errorf("otlp endpoint %q: no host", endpoint)
	}
	return u.Host, nil
}
