package controlplane

import (
	"github.com/flotilla-ci/flotilla/mesh"
)

// The shop's token facts the gateway checks against (shop/kit's
// TokenIssuer, TokenAudience and JWKSPath; a test keeps them the same).
const (
	userService   = "user-service"
	tokenIssuer   = "user-service"
	tokenAudience = "shop"
	jwksPath      = "/.well-known/jwks.json"
)

// publicReads are the services whose reads (GET, HEAD) are public at the
// gateway: anonymous shoppers browse the catalog and search it. Their
// other methods need a signed-in user's token like every other route;
// the services check what more they need themselves (product-service an
// admin's token). search-service's POST /admin/reindex passes the
// gateway with a signed-in user's token and wants its ADMIN_TOKEN in
// X-Admin-Token besides.
var publicReads = map[string]bool{"product-service": true, "search-service": true}

// GatewayConfig is the platform's edge gateway for the services names,
// reached at their mesh addresses (addrs): one route per service under
// its GatewayPrefix, and bearer tokens checked against user-service's
// JWKS (fetched through its mesh address) on every route that needs a
// signed-in user: cart, order, payment, shipping, notification,
// inventory, analytics, and user-service's own prefix.
//
// Public, for what anonymous shoppers and probes do: registering
// (POST /api/user/users), logging in (POST /api/user/login), the JWKS,
// reading product and search (GET and HEAD; their writes need a token),
// and every service's /health and /ready. A user's own data
// (/api/user/users/me, the addresses) needs a token at the edge too.
// Without user-service among names there are no keys to check against,
// and every route is public.
func GatewayConfig(names []string, addrs map[string]string) mesh.GatewayConfig {
	gwc := mesh.DefaultGatewayConfig()
	jwt := addrs[userService] != ""
	for _, n := range names {
		if jwt && n == userService {
			gwc.JWT.JWKSURL = "http://" + addrs[n] + jwksPath
			gwc.JWT.Issuer, gwc.JWT.Audience = tokenIssuer, tokenAudience
		}
	}
	public := func(prefix, service, rewrite string, methods ...string) mesh.RouteEntry {
		return mesh.RouteEntry{Path: prefix, Service: service, Rewrite: rewrite, Public: true, Methods: methods}
	}
	for _, n := range names {
		prefix := GatewayPrefix(n)
		gwc.Routes = append(gwc.Routes,
			mesh.RouteEntry{Path: prefix + "/**", Service: n, Rewrite: "/", Public: !jwt},
			public(prefix+"/health", n, "/health", "GET", "HEAD"),
			public(prefix+"/ready", n, "/ready", "GET", "HEAD"))
		if jwt && publicReads[n] {
			gwc.Routes = append(gwc.Routes, public(prefix+"/**", n, "/", "GET", "HEAD"))
		}
		if jwt && n == userService {
			gwc.Routes = append(gwc.Routes,
				public(prefix+"/users", n, "/users", "POST"),
				public(prefix+"/login", n, "/login", "POST"),
				public(prefix+jwksPath, n, jwksPath, "GET", "HEAD"))
		}
	}
	return gwc
}
