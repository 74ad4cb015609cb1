package user_test

import (
	"testing"

	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/user/usertest"
)

func TestUserAddresses(t *testing.T) {
	kittest.Each(t, func(t *testing.T, env kittest.Env) {
		m, customer, admin := usertest.StartForTest(t, env)
		if r := kittest.Call(t, "POST", m.URL()+"/users/me/addresses", customer, map[string]string{"line1": "Hauptstr. 1", "city": "Berlin", "postalCode": "10115", "country": "DE"}); r.Status != 201 {
			t.Fatalf("add address: %d %s", r.Status, r.Body)
		}
		var me struct{ ID string }
		kittest.Call(t, "GET", m.URL()+"/users/me", customer, nil).JSON(t, &me)
		other := usertest.Token(t, m.URL(), "other@shop.test")
		for _, tc := range []struct {
			name, token, id string
			want, n         int
		}{
			{"the user themself", customer, me.ID, 200, 1},
			{"an admin (a service account)", admin, me.ID, 200, 1},
			{"another user", other, me.ID, 403, 0},
			{"no token", "", me.ID, 401, 0},
			{"an unknown user", admin, "nope", 404, 0},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := kittest.Call(t, "GET", m.URL()+"/users/"+tc.id+"/addresses", tc.token, nil)
				if r.Status != tc.want {
					t.Fatalf("GET /users/%s/addresses: %d %s, want %d", tc.id, r.Status, r.Body, tc.want)
				}
				if tc.want == 200 {
					var out struct{ Addresses []struct{ City string } }
					r.JSON(t, &out)
					if len(out.Addresses) != tc.n || out.Addresses[0].City != "Berlin" {
						t.Errorf("addresses = %+v", out.Addresses)
					}
				}
			})
		}
	})
}
