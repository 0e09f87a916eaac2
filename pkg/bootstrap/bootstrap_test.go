package bootstrap_test

import (
	"context"
	"errors"
	"testing"

	"github.com/groupbuy/groupbuy/pkg/bootstrap"
	"github.com/groupbuy/groupbuy/pkg/sidecar"
)

// An app without an app token refuses to start, unless told it is a local run without tokens.
func TestStartNeedsAnAppToken(t *testing.T) {
	t.Parallel()
	if _, err := bootstrap.Start(context.Background(), "x", bootstrap.Base{}); !errors.Is(err, bootstrap.ErrNoAppToken) {
		t.Errorf("Start without APP_API_TOKEN: %v, want ErrNoAppToken", err)
	}
	for _, b := range []bootstrap.Base{
		{Dapr: sidecar.Config{AppAPIToken: "t"}},
		{AllowNoAppToken: true},
	} {
		if err := bootstrap.CheckAppToken(b); err != nil {
			t.Errorf("CheckAppToken(%+v) = %v, want nil", b, err)
		}
	}
}
