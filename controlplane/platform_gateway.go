package controlplane

import (
	"time"

	"github.com/flotilla-ci/flotilla/graph"
	"github.com/flotilla-ci/flotilla/mesh"
)

// The shop's token facts the gateway checks against (shop/kit's
// TokenIssuer, TokenAudience, JWKSPath and TokenLeeway; a test keeps them
// the same).
const (
	userService   = "user-service"
	tokenIssuer   = "user-service"
	tokenAudience = "shop"
	jwksPath      = "/.well-known/jwks.json"
	tokenLeeway   = 5 * time.Second
	roleClaim     = "role"
)

// The gateway's abuse limits in `flotilla up`: every route, per client (a
// signed-in user by their token's subject, anyone else by address), and
// stricter on what costs a password hash.
var (
	defaultRateLimit  = mesh.RateLimit{RequestsPerSecond: 200, Burst: 400}
	passwordRateLimit = mesh.RateLimit{RequestsPerSecond: 5, Burst: 20}
)

// GatewayConfig is the platform's edge gateway for the services, reached
// at their mesh addresses (addrs): the routes each declares in
// flotilla.yaml (`routes:`), under its GatewayPrefix, and nothing else:
// every other path is internal, answered 404 at the edge. A route's auth
// is checked here: user needs a valid bearer token (checked against
// user-service's JWKS, fetched through its mesh address, with the
// services' own leeway), admin a token whose role claim is admin. GET
// routes take HEAD too. Every service's /health and /ready are public
// besides (probes; they say nothing of the shop's data).
//
// Rate limits are on: 200 requests/s (burst 400) per client and route,
// and 5/s (burst 20) per client on logging in and registering. Bodies
// over 1 MiB are refused 413.
//
// Without user-service among the services there are no keys to check
// tokens against: only public routes are exposed.
func GatewayConfig(services []*graph.Service, addrs map[string]string) mesh.GatewayConfig {
	gwc := mesh.DefaultGatewayConfig()
	gwc.RateLimit = defaultRateLimit
	gwc.JWT.Leeway = mesh.Duration(tokenLeeway)
	jwt := addrs[userService] != ""
	if jwt {
		gwc.JWT.JWKSURL = "http://" + addrs[userService] + jwksPath
		gwc.JWT.Issuer, gwc.JWT.Audience = tokenIssuer, tokenAudience
	}
	for _, s := range services {
		if addrs[s.Name] == "" {
			continue
		}
		prefix := GatewayPrefix(s.Name)
		for _, p := range []string{"/health", "/ready"} {
			gwc.Routes = append(gwc.Routes, mesh.RouteEntry{Path: prefix + p, Service: s.Name, Rewrite: p, Exact: true, Public: true, Methods: []string{"GET", "HEAD"}})
		}
		for _, r := range s.Routes {
			if r.Auth != graph.RoutePublic && !jwt {
				continue
			}
			if (r.Path == "/health" || r.Path == "/ready") && (r.Method == "GET" || r.Method == "HEAD") {
				continue // public already
			}
			e := mesh.RouteEntry{Path: prefix + r.Path, Service: s.Name, Rewrite: r.Path, Exact: true,
				Public: r.Auth == graph.RoutePublic, Methods: []string{r.Method}}
			if r.Path == "/" {
				e.Path = prefix
			}
			if r.Method == "GET" && !hasRoute(s.Routes, "HEAD", r.Path) {
				e.Methods = append(e.Methods, "HEAD")
			}
			if r.Auth == graph.RouteAdmin {
				e.Claims = map[string]string{roleClaim: "admin"}
			}
			if s.Name == userService && r.Method == "POST" && (r.Path == "/login" || r.Path == "/users") {
				rl := passwordRateLimit
				e.RateLimit = &rl
			}
			gwc.Routes = append(gwc.Routes, e)
		}
	}
	return gwc
}

func hasRoute(routes []graph.Route, method, path string) bool {
	for _, r := range routes {
		if r.Method == method && r.Path == path {
			return true
		}
	}
	return false
}
