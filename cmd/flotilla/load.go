package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/flotilla-ci/flotilla/shop/load"
)

func (a *app) loadCmd() *cobra.Command {
	var (
		cfgPath, mode, flows, format string
		t                            load.Targets
		users, requests              int
		rate, flowRate               float64
		duration, think, timeout     time.Duration
		allowErrors                  bool
	)
	cmd := &cobra.Command{
		Use:   "load",
		Short: "Put the shop under load: weighted user flows, closed or open loop, with a latency summary",
		Long: `load runs user flows against the shop (browse, search, add_to_cart, checkout, track),
through the edge gateway or each service's URL: a closed loop of --users virtual
users, or an open loop offering --rate requests per second whatever the answers
take (so a slow shop shows as latency, not as fewer requests). A flow sends one
to five requests; the open loop starts flows at the rate divided by the mix's
requests per flow, corrected as it runs by what the flows actually sent.
--flow-rate starts a fixed number of flows per second instead. It stops after
--duration and/or --requests, prints a progress line on stderr, and a summary:
requests offered and achieved per second, errors by status, p50/p90/p99/max
latency, orders placed, and the business failures, which are no HTTP errors:
orders cancelled, by reason (out_of_stock, payment_failed, ...). Interrupted
(Ctrl-C), it prints the summary of what ran until then, or how far setup came.

A --config YAML file holds the same settings (see shop/load.Config); flags win.
Exit status 1 when any request failed (unless --allow-errors), 2 for bad input,
3 when the shop could not be reached to set the run up, 130 when interrupted
(after the summary of what ran).`,
		Example: `  flotilla load --gateway http://127.0.0.1:7400 --mode open --rate 100 --duration 5m
  flotilla load --config load.yaml --requests 10000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c := load.DefaultConfig()
			if cfgPath != "" {
				data, err := os.ReadFile(cfgPath)
				if err != nil {
					return usageErr(err)
				}
				if c, err = load.ParseConfig(data); err != nil {
					return usageErr(fmt.Errorf("%s: %w", cfgPath, err))
				}
			}
			f := cmd.Flags()
			for name, v := range map[string]struct{ dst, val *string }{
				"gateway": {&c.Targets.Gateway, &t.Gateway}, "user-url": {&c.Targets.User, &t.User}, "product-url": {&c.Targets.Product, &t.Product},
				"cart-url": {&c.Targets.Cart, &t.Cart}, "order-url": {&c.Targets.Order, &t.Order}, "shipping-url": {&c.Targets.Shipping, &t.Shipping},
				"search-url": {&c.Targets.Search, &t.Search}, "mode": {&c.Mode, &mode},
			} {
				if f.Changed(name) {
					*v.dst = *v.val
				}
			}
			if f.Changed("users") {
				c.Users = users
			} else if cfgPath == "" && c.Mode == load.Open {
				c.Users = 0 // accounts from the rate
			}
			// A rate flag replaces either rate of the config file; both
			// flags together are an error Validate names.
			if f.Changed("rate") {
				c.RequestRate = rate
				if !f.Changed("flow-rate") {
					c.Rate = 0
				}
			}
			if f.Changed("flow-rate") {
				c.Rate = flowRate
				if !f.Changed("rate") {
					c.RequestRate = 0
				}
			}
			if f.Changed("requests") {
				c.Requests = requests
				if !f.Changed("duration") && cfgPath == "" {
					c.Duration = 0 // a count alone ends the run
				}
			}
			if f.Changed("duration") {
				c.Duration = load.Duration(duration)
			}
			if f.Changed("think") {
				c.Think = load.Duration(think)
			}
			if f.Changed("timeout") {
				c.Timeout = load.Duration(timeout)
			}
			if f.Changed("flows") {
				fl, err := load.ParseFlows(flows)
				if err != nil {
					return usageErr(err)
				}
				c.Flows = fl
			}
			if format != "text" && format != "json" {
				return usageErr(fmt.Errorf("--format %q: want text or json", format))
			}
			if err := c.Validate(); err != nil {
				return usageErr(err)
			}
			s, err := load.Run(cmd.Context(), c, a.stderr)
			if err != nil {
				return noAnswer(err)
			}
			if format == "json" {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				_ = enc.Encode(s)
			} else {
				s.Write(a.stdout)
			}
			if s.Interrupted {
				return &exitError{code: exitInterrupted, err: errors.New("load interrupted: the summary covers what ran until then")}
			}
			if s.Errors > 0 && !allowErrors {
				return failed()
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&cfgPath, "config", "c", "", "a YAML load config (flags override it)")
	f.StringVar(&t.Gateway, "gateway", "", "the edge gateway's URL: every flow goes through it")
	f.StringVar(&t.User, "user-url", "", "user-service's URL (instead of the gateway)")
	f.StringVar(&t.Product, "product-url", "", "product-service's URL")
	f.StringVar(&t.Cart, "cart-url", "", "cart-service's URL")
	f.StringVar(&t.Order, "order-url", "", "order-service's URL")
	f.StringVar(&t.Shipping, "shipping-url", "", "shipping-service's URL (track also reads shipments)")
	f.StringVar(&t.Search, "search-url", "", "search-service's URL")
	f.StringVar(&mode, "mode", load.Closed, "closed (N virtual users) or open (a fixed request rate)")
	f.IntVar(&users, "users", 10, "virtual users (closed); customer accounts (open; default 50, or two seconds of flows if more)")
	f.Float64Var(&rate, "rate", 0, "requests per second offered (open)")
	f.Float64Var(&flowRate, "flow-rate", 0, "flows started per second (open), instead of --rate")
	f.DurationVar(&duration, "duration", 30*time.Second, "how long to run")
	f.IntVar(&requests, "requests", 0, "stop after this many requests")
	f.StringVar(&flows, "flows", "", "flow weights, e.g. browse=5,search=2,add_to_cart=2,checkout=1,track=1")
	f.DurationVar(&think, "think", 0, "a virtual user's pause between flows (closed)")
	f.DurationVar(&timeout, "timeout", 10*time.Second, "per-request timeout of the run (setup requests, such as registering accounts, get at least 2m)")
	f.StringVar(&format, "format", "text", "summary format: text or json")
	f.BoolVar(&allowErrors, "allow-errors", false, "exit 0 even when requests failed")
	return cmd
}
