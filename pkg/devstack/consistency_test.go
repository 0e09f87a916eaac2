package devstack

import (
	"path/filepath"
	"testing"
)

// The repository's committed run file and Configuration must agree: dapr/config.yaml's
// name-resolution template is what dapr/dapr.yaml's daprInternalGRPCPorts imply, so that
// `dapr run -f dapr/dapr.yaml` resolves every app. Regenerate the template with
// NameResolutionTemplate when an app or port changes.
func TestCommittedConfigMatchesRunFile(t *testing.T) {
	t.Parallel()
	rf, err := LoadRunFile(filepath.Join("..", "..", "dapr", "dapr.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := NameResolutionTemplate(rf.Apps)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range rf.Apps {
		got, err := ReadNameResolutionTemplate(a.ConfigFilePath)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s: name-resolution template of app %q\n got: %s\nwant: %s", a.ConfigFilePath, a.AppID, got, want)
		}
	}
}

// The committed run file, components and config materialize without error.
func TestCommittedRunFileMaterializes(t *testing.T) {
	t.Parallel()
	p, err := Materialize(filepath.Join("..", "..", "dapr", "dapr.yaml"), Options{OutDir: t.TempDir(), DaprBinDir: "/opt/dapr/bin"})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Apps) == 0 {
		t.Fatal("no apps")
	}
}
