package protobuf_test

import (
	"testing"

	"github.com/flotilla-ci/flotilla/schema"
	"github.com/flotilla-ci/flotilla/schema/protobuf"
)

// FuzzProto: any two texts are parsed as .proto files; when both link, the
// rules compare them both ways without a panic.
func FuzzProto(f *testing.F) {
	for _, p := range pairs {
		f.Add(p.old, p.new)
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		sa, errA := protobuf.Parse(a, nil)
		sb, errB := protobuf.Parse(b, nil)
		if errA != nil || errB != nil {
			return
		}
		_ = protobuf.Check(schema.FullTransitive, sb, []*protobuf.Schema{sa})
		_, _ = sa.MessageIndexes("shop.Order")
	})
}
