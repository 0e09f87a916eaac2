package devstack

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"
)

func TestNameResolutionTemplate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		apps    []App
		want    string
		wantErr string
	}{
		{
			name: "one app",
			apps: []App{{AppID: "gateway", DaprInternalGRPCPort: 50200}},
			want: `{{if eq .ID "gateway"}}127.0.0.1:50200{{else}}unknown-app-{{.ID}}.invalid:1{{end}}`,
		},
		{
			name: "several apps in order",
			apps: []App{{AppID: "gateway", DaprInternalGRPCPort: 50200}, {AppID: "catalog", DaprInternalGRPCPort: 50201}},
			want: `{{if eq .ID "gateway"}}127.0.0.1:50200{{else if eq .ID "catalog"}}127.0.0.1:50201` +
				`{{else}}unknown-app-{{.ID}}.invalid:1{{end}}`,
		},
		{
			name:    "internal port missing",
			apps:    []App{{AppID: "gateway"}},
			wantErr: "daprInternalGRPCPort",
		},
		{
			name:    "id that would break the template",
			apps:    []App{{AppID: `a"b`, DaprInternalGRPCPort: 1}},
			wantErr: "cannot be used",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := NameResolutionTemplate(tt.apps)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestEffectiveConfig(t *testing.T) {
	t.Parallel()
	src := `# keep me
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: c
spec:
  tracing:
    samplingRate: "1"
  nameResolution:
    component: mdns
`
	// Exporting to 127.0.0.1:4318 over OTLP/HTTP, everything sampled.
	traced := map[string]any{
		"tracing": map[string]any{
			"samplingRate": "1",
			"otel":         map[string]any{"endpointAddress": "127.0.0.1:4318", "isSecure": false, "protocol": "http"},
		},
		"nameResolution": map[string]any{"component": "kubernetes", "configuration": map[string]any{"template": "T"}},
	}
	tests := []struct {
		name string
		src  string // "" for src
		otlp string
		want map[string]any
	}{
		{
			name: "template only",
			want: map[string]any{
				"tracing":        map[string]any{"samplingRate": "1"},
				"nameResolution": map[string]any{"component": "kubernetes", "configuration": map[string]any{"template": "T"}},
			},
		},
		{
			name: "a collector turns tracing on when the file leaves it off",
			src:  strings.Replace(src, `samplingRate: "1"`, `samplingRate: "0"`, 1),
			otlp: "127.0.0.1:4318",
			want: traced,
		},
		{
			name: "otel exporter from a URL",
			otlp: "http://127.0.0.1:4318",
			want: traced,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := src
			if tt.src != "" {
				in = tt.src
			}
			out, err := effectiveConfig([]byte(in), "T", tt.otlp)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(out), "# keep me") {
				t.Errorf("comment lost:\n%s", out)
			}
			var got struct {
				Spec map[string]any `yaml:"spec"`
			}
			if err := yaml.Unmarshal(out, &got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got.Spec); diff != "" {
				t.Errorf("spec (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEffectiveConfigRejectsOtherKinds(t *testing.T) {
	t.Parallel()
	if _, err := effectiveConfig([]byte("kind: Component\n"), "T", ""); err == nil {
		t.Error("want an error for a Component")
	}
}

func TestOTLPAddress(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{"127.0.0.1:4318", "127.0.0.1:4318", false},
		{"http://127.0.0.1:4318", "127.0.0.1:4318", false},
		{"http://collector:4318/v1/traces", "collector:4318", false},
		{"https://collector:4318", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := otlpAddress(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("otlpAddress(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}
