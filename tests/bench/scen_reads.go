package main

import (
	"context"
	"net/http"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// scenarioR: public reads, anonymous: a deal, a product, a deal id that does not exist, beside
// the baseline's deal read.
func (b *bench) scenarioR(ctx context.Context) error {
	const scen = "R"
	d, err := b.seed.flashDeal(ctx, 1000)
	if err != nil {
		return err
	}
	before, err := readStock(ctx, b.stack.Redis, d.ID)
	if err != nil {
		return err
	}
	get := func(name, url string, status int, code string) *loadTarget {
		return &loadTarget{
			Name:     name,
			Next:     func(t *vegeta.Target) error { t.Method, t.URL = http.MethodGet, url; return nil },
			Classify: expect(code, status),
		}
	}
	gw := b.stack.GatewayURL()
	for _, x := range []struct {
		key, label string
		t          *loadTarget
	}{
		{"R.deal", "platform: GET /deals/{id}", get("R deal", gw+"/deals/"+d.ID, http.StatusOK, "")},
		{"R.product", "platform: GET /products/{id}", get("R product", gw+"/products/"+d.ProductID, http.StatusOK, "")},
		{"R.unknown", "platform: GET /deals/{unknown id}", get("R unknown deal", gw+"/deals/1999999999999999999", http.StatusNotFound, "not-found")},
	} {
		prof := profile(ctx, x.t, b.platformMeter(), b.opts(false), b.logf)
		b.report.addProfile(scen, x.label, x.key, &prof, pathNote(prof.Main))
		b.report.set(x.key+".okps", prof.Main.OKPerSec)
	}
	bid := "b-r-" + b.cfg.Stamp
	if err := b.seedBaselineDeal(ctx, bid, 1000); err != nil {
		return err
	}
	bprof := profile(ctx, get("R baseline deal", b.baselineURL+"/deals/"+bid, http.StatusOK, ""), b.baselineMeter(), b.opts(false), b.logf)
	b.report.addProfile(scen, "baseline (b): GET /deals/{id}", "R.baseline", &bprof, "")
	b.report.set("R.baseline.okps", bprof.Main.OKPerSec)
	after, err := readStock(ctx, b.stack.Redis, d.ID)
	switch {
	case err != nil:
		b.report.Checks = append(b.report.Checks, fail(scen, "deal "+d.ID+": untouched by reads", "%v", err))
	case after != before:
		b.report.Checks = append(b.report.Checks, fail(scen, "deal "+d.ID+": untouched by reads", "before %+v, after %+v", before, after))
	default:
		b.report.Checks = append(b.report.Checks, pass(scen, "deal "+d.ID+": untouched by reads", "stock %d, all available", after.Stock))
	}
	return nil
}
