// Command shipping runs shipping-service. Configuration: see kit.Load,
// plus ORDER_URL, USER_URL and:
//
//	SHIPPING_HOME                         the shop's country (domestic zone), default DE
//	SHIPPING_UNDELIVERABLE                countries no carrier serves, comma-separated
//	SHIPPING_FAILURE_RATE                 fraction of parcels the carrier refuses (0 to 1)
//	SHIPPING_LABEL_AFTER, SHIPPING_DELIVER_AFTER  the simulated carrier's pace, e.g. 2s, 5s
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/shipping"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	kc, err := kit.Load(shipping.Service, shipping.Deps, os.Args[1:], os.Getenv, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "shipping-service:", err)
		os.Exit(2)
	}
	cfg := shipping.Config{Kit: kc}
	cfg.Rates.Home = os.Getenv("SHIPPING_HOME")
	if v := os.Getenv("SHIPPING_UNDELIVERABLE"); v != "" {
		for _, c := range strings.Split(v, ",") {
			cfg.Rates.Undeliverable = append(cfg.Rates.Undeliverable, strings.ToUpper(strings.TrimSpace(c)))
		}
	}
	if v := os.Getenv("SHIPPING_FAILURE_RATE"); v != "" {
		if cfg.FailureRate, err = strconv.ParseFloat(v, 64); err != nil || cfg.FailureRate < 0 || cfg.FailureRate > 1 {
			fmt.Fprintf(os.Stderr, "shipping-service: SHIPPING_FAILURE_RATE %q: want a number from 0 to 1\n", v)
			os.Exit(2)
		}
	}
	for name, d := range map[string]*time.Duration{"SHIPPING_LABEL_AFTER": &cfg.LabelAfter, "SHIPPING_DELIVER_AFTER": &cfg.DeliverAfter} {
		if v := os.Getenv(name); v != "" {
			if *d, err = time.ParseDuration(v); err != nil || *d <= 0 {
				fmt.Fprintf(os.Stderr, "shipping-service: %s %q: want a duration such as 5s\n", name, v)
				os.Exit(2)
			}
		}
	}
	m := &shipping.Main{Config: cfg}
	if err := m.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "shipping-service:", err)
		os.Exit(1)
	}
}
