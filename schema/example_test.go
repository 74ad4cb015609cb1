package schema_test

import (
	"fmt"

	"github.com/flotilla-ci/flotilla/schema"
)

func Example() {
	v1 := schema.MustParse(`{"type":"record","name":"OrderCreated","fields":[
		{"name":"order_id","type":"string"},
		{"name":"total_cents","type":"long"}]}`)
	v2 := schema.MustParse(`{"type":"record","name":"OrderCreated","fields":[
		{"name":"order_id","type":"string"},
		{"name":"total_cents","type":"int"},
		{"name":"currency","type":"string"}]}`)
	for _, p := range schema.Backward.Check(v2, []schema.Version{{Version: 1, Schema: v1}}) {
		fmt.Println(p.Reason, p.Location, p.Detail)
	}
	// Output:
	// TYPE_MISMATCH /fields/1/type reader type: INT not compatible with writer type: LONG
	// READER_FIELD_MISSING_DEFAULT_VALUE /fields/2 currency
}
