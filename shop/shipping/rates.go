package shipping

import (
	"errors"
	"fmt"
	"slices"
)

// Zones a destination falls in, seen from Config.Home.
const (
	ZoneDomestic = "domestic"
	ZoneEU       = "eu"
	ZoneWorld    = "world"
)

// Rate is one line of a rate table: what a carrier's service costs to a
// zone, up to a weight.
type Rate struct {
	Carrier    string `json:"carrier"`
	Service    string `json:"service"`
	Zone       string `json:"zone"`
	MaxWeightG int64  `json:"maxWeightG"`
	Price      int64  `json:"price"` // minor units
	Currency   string `json:"currency"`
}

// DefaultRates is the shop's rate table (prices in euro cents).
func DefaultRates() []Rate {
	return []Rate{
		{Carrier: "DHL", Service: "paket", Zone: ZoneDomestic, MaxWeightG: 31500, Price: 549, Currency: "EUR"},
		{Carrier: "Hermes", Service: "standard", Zone: ZoneDomestic, MaxWeightG: 5000, Price: 449, Currency: "EUR"},
		{Carrier: "DHL", Service: "paket-eu", Zone: ZoneEU, MaxWeightG: 31500, Price: 1699, Currency: "EUR"},
		{Carrier: "DPD", Service: "classic-eu", Zone: ZoneEU, MaxWeightG: 10000, Price: 1299, Currency: "EUR"},
		{Carrier: "UPS", Service: "worldwide-saver", Zone: ZoneWorld, MaxWeightG: 30000, Price: 4499, Currency: "EUR"},
	}
}

var euCountries = []string{"AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK"}

// ErrUndeliverable is returned by Quote when no carrier takes the parcel.
var ErrUndeliverable = errors.New("undeliverable")

// RateTable picks the carrier for a parcel.
type RateTable struct {
	Home          string   // the shop's country: its zone is domestic
	Rates         []Rate   // candidates
	Undeliverable []string // countries no carrier serves
}

// Zone is the zone of country.
func (t RateTable) Zone(country string) string {
	switch {
	case country == t.Home:
		return ZoneDomestic
	case slices.Contains(euCountries, country):
		return ZoneEU
	default:
		return ZoneWorld
	}
}

// Quote returns the cheapest rate serving country for weightG grams (ties:
// the first in the table), or an error wrapping ErrUndeliverable.
func (t RateTable) Quote(country string, weightG int64) (Rate, error) {
	if slices.Contains(t.Undeliverable, country) {
		return Rate{}, fmt.Errorf("%w: no carrier delivers to %s", ErrUndeliverable, country)
	}
	zone := t.Zone(country)
	best, found := Rate{}, false
	for _, r := range t.Rates {
		if r.Zone != zone || weightG > r.MaxWeightG {
			continue
		}
		if !found || r.Price < best.Price {
			best, found = r, true
		}
	}
	if !found {
		return Rate{}, fmt.Errorf("%w: no %s rate for a %d g parcel to %s", ErrUndeliverable, zone, weightG, country)
	}
	return best, nil
}
