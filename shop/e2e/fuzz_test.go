package e2e

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/shoptest"
	"github.com/flotilla-ci/flotilla/shop/user"
)

// publicRoute is a route of the order path the gateway exposes that reads
// a JSON body (flotilla.yaml's routes), with the token it is called with.
type publicRoute struct {
	service, method, path string // {arg}: the fuzzed path argument, escaped
	token                 string // "customer", "admin" or none
}

var publicBodyRoutes = []publicRoute{
	{"user", "POST", "/users", ""},
	{"user", "POST", "/login", ""},
	{"user", "PATCH", "/users/me", "customer"},
	{"user", "POST", "/users/me/addresses", "customer"},
	{"cart", "POST", "/carts/me/items", "customer"},
	{"cart", "PUT", "/carts/me/items/{arg}", "customer"},
	{"order", "POST", "/orders", "customer"},
	{"product", "POST", "/products", "admin"},
	{"product", "PUT", "/products/{arg}", "admin"},
	{"product", "PUT", "/products/{arg}/price", "admin"},
}

// FuzzPublicBodies sends any body (and any path argument) to the real
// services' public routes that decode JSON (registration, login, profile,
// addresses, cart lines, checkout, product writes): each answers a
// success or a 4xx problem (application/problem+json with a code and the
// status it was sent with), never a 5xx, a panic or a dropped connection.
// The login and registration throttles' 429 and the password hashing's
// 503 busy are the answers of limits, not failures.
func FuzzPublicBodies(f *testing.F) {
	env := kittest.SQLiteEnv(f)
	shop := shoptest.Start(f, env, shoptest.Options{Products: 2, UserLimits: user.Limits{MaxHashing: 2, LoginWindow: time.Second}})
	tokens := map[string]string{"customer": shop.Customer(f, "fuzz@shop.test"), "admin": shop.AdminToken}
	bases := map[string]string{"user": shop.User.URL(), "cart": shop.Cart.URL(), "order": shop.Order.URL(), "product": shop.Product.URL()}
	seeds := []struct {
		route     int
		body, arg string
	}{
		{0, `{"email":"new@shop.test","password":"correct horse","name":"New"}`, ""},
		{0, `{"email":"not an address","password":"x","name":"\u0000"}`, ""},
		{1, `{"email":"fuzz@shop.test","password":"wrong"}`, ""},
		{1, `{"email":1}`, ""},
		{2, `{"name":"Eve\r\nBcc: all@shop.test"}`, ""},
		{2, `{"name":"<script>"}`, ""},
		{3, `{"line1":"Hauptstr. 1","city":"Berlin","postalCode":"10115","country":"DE"}`, ""},
		{3, `{"line1":"","country":"XX"}`, ""},
		{4, `{"sku":"SKU-0001","quantity":1}`, ""},
		{4, `{"sku":"../products/SKU-0001","quantity":-1}`, ""},
		{5, `{"quantity":2}`, "SKU-0001"},
		{5, `{"quantity":1e30}`, "SKU-0001?x=1"},
		{6, ``, ""},
		{6, `{"x":1}`, ""},
		{7, `{"sku":"FUZZ-1","name":"Fuzzed","price":100,"currency":"EUR","category":"x"}`, ""},
		{7, `{"sku":"fuzz","price":-1,"currency":"euro"}`, ""},
		{8, `{"name":"Renamed","description":"d","category":"c"}`, "SKU-0002"},
		{9, `{"price":1,"currency":"EUR"}`, "SKU-0002\x00"},
		{9, `[]`, ".."},
	}
	for _, s := range seeds {
		f.Add(uint8(s.route), s.body, s.arg)
	}
	f.Fuzz(func(t *testing.T, route uint8, body, arg string) {
		rt := publicBodyRoutes[int(route)%len(publicBodyRoutes)]
		path := strings.ReplaceAll(rt.path, "{arg}", url.PathEscape(arg))
		r := kittest.Call(t, rt.method, bases[rt.service]+path, tokens[rt.token], body)
		where := rt.method + " " + rt.path
		switch {
		case r.Status == 429 || (r.Status == 503 && r.ErrorCode() == "busy"):
			return
		case r.Status >= 500 || r.Status < 200:
			t.Fatalf("%s with %q (arg %q): %d %s; want a success or a 4xx problem", where, body, arg, r.Status, r.Body)
		case r.Status < 400:
			return
		}
		var p kit.Problem
		if !strings.HasPrefix(r.Header.Get("Content-Type"), kit.ProblemContentType) || json.Unmarshal(r.Body, &p) != nil ||
			p.Code == "" || p.Status != r.Status || p.Detail == "" {
			t.Fatalf("%s with %q (arg %q): %d %s %s; want an application/problem+json with a code", where, body, arg, r.Status, r.Header.Get("Content-Type"), r.Body)
		}
	})
}
