package devstack

import (
	"testing"
)

func TestOffsetPorts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		offset  int
		port    int
		want    int
		wantErr bool
	}{
		{"shifts", 100, 3500, 3600, false},
		{"zero stays unset", 100, 0, 0, false},
		{"negative offset", -1000, 50005, 49005, false},
		{"out of range", 20000, 50005, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := OffsetPorts(tt.offset)("gateway", PortDaprHTTP, tt.port)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %d, want %d", got, tt.want)
			}
		})
	}
}

func TestFreePortsAreDistinctAndStable(t *testing.T) {
	t.Parallel()
	m := FreePorts()
	seen := map[int]string{}
	for _, id := range []string{"a", "b", ""} {
		for _, kind := range []PortKind{PortApp, PortDaprHTTP, PortDaprGRPC, PortDaprInternalGRPC, PortMetrics} {
			p, err := m(id, kind, 0)
			if err != nil {
				t.Fatal(err)
			}
			if prev, ok := seen[p]; ok {
				t.Fatalf("port %d handed out for %s and %s/%s", p, prev, id, kind)
			}
			seen[p] = id + "/" + string(kind)
			again, err := m(id, kind, 1234)
			if err != nil || again != p {
				t.Errorf("second call for %s/%s = %d, %v; want %d", id, kind, again, err, p)
			}
		}
	}
}
