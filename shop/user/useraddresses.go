package user

import (
	"net/http"

	"github.com/flotilla-ci/flotilla/shop/kit"
)

// userAddresses answers GET /users/{id}/addresses: the user themself or an
// admin (a service account such as shipping-service's, which reads the
// delivery address of a confirmed order).
func (m *Main) userAddresses(w http.ResponseWriter, r *http.Request) error {
	c := kit.ClaimsFrom(r.Context())
	id := r.PathValue("id")
	if !c.MayActFor(id) {
		return kit.Forbidden("user %s may not read the addresses of user %s", c.UserID(), id)
	}
	if _, err := m.load(r.Context(), id); err != nil {
		return err
	}
	rows, err := m.app.DB.QueryContext(r.Context(), `SELECT id, line1, city, postal_code, country FROM addresses WHERE user_id = $1 ORDER BY created_ms, id`, id)
	if err != nil {
		return err
	}
	defer func() { _ = rows.Close() }()
	out := []Address{}
	for rows.Next() {
		var a Address
		if err := rows.Scan(&a.ID, &a.Line1, &a.City, &a.PostalCode, &a.Country); err != nil {
			return err
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	kit.WriteJSON(w, http.StatusOK, map[string]any{"addresses": out})
	return nil
}
