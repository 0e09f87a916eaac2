package devstack

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"
)

// The dapr/ dir holds the run file, the Configuration and JSON secrets next to resiliency.yaml;
// only the Resiliency is a resource daprd loads.
func TestLoadResourcesKeepsOnlyResourceKinds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		dirs []string
		want []string
	}{
		{"dapr dir", []string{"testdata/unit/dapr"}, []string{"Resiliency/fixture"}},
		{
			"components and dapr dir",
			[]string{"testdata/unit/components", "testdata/unit/dapr"},
			[]string{"Component/pubsub", "Subscription/orders", "Component/secretstore", "Component/statestore", "Resiliency/fixture"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rs, err := LoadResources(tt.dirs...)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range rs {
				got = append(got, r.Kind+"/"+r.Name)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("resources (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadResourcesRejectsDuplicates(t *testing.T) {
	t.Parallel()
	if _, err := LoadResources("testdata/unit/components", "testdata/unit/components"); err == nil {
		t.Error("want an error for a component defined twice")
	}
}

func TestComponentOverridesAndSecretsFile(t *testing.T) {
	t.Parallel()
	out := t.TempDir()
	p := fixturePlan(t, Options{
		OutDir:   out,
		RepoRoot: "/srv/groupbuy",
		ComponentMetadata: map[string]map[string]string{
			"statestore": {"redisDB": "15", "redisPassword": "pw", "keyPrefix": "none"},
		},
	})
	if err := p.Write(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		file string
		want []metadataItem
	}{
		{
			// replaced, secretKeyRef replaced by a value, added
			file: "component-statestore.yaml",
			want: []metadataItem{
				{Name: "redisHost", Value: "127.0.0.1:6379"},
				{Name: "redisDB", Value: "15"},
				{Name: "redisPassword", Value: "pw"},
				{Name: "keyPrefix", Value: "none"},
			},
		},
		{
			// a relative secretsFile is made absolute against the app's directory, daprd's
			// working directory under the Dapr CLI
			file: "component-secretstore.yaml",
			want: []metadataItem{{Name: "secretsFile", Value: filepath.Join(testdataAbs(t), "unit", "apps", "alpha", "dapr", "secrets.json")}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(filepath.Join(out, "resources", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			var c struct {
				Spec struct {
					Metadata []metadataItem `yaml:"metadata"`
				} `yaml:"spec"`
			}
			if err := yaml.Unmarshal(data, &c); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, c.Spec.Metadata); diff != "" {
				t.Errorf("metadata (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDefaultRepoRootIsTheModuleRoot(t *testing.T) {
	t.Parallel()
	p := fixturePlan(t, Options{})
	want, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if p.RepoRoot != want {
		t.Errorf("RepoRoot = %s, want %s (the directory holding go.mod)", p.RepoRoot, want)
	}
}

type metadataItem struct {
	Name         string         `yaml:"name"`
	Value        string         `yaml:"value"`
	SecretKeyRef map[string]any `yaml:"secretKeyRef,omitempty"`
}

func testdataAbs(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}
