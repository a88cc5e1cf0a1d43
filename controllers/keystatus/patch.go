package keystatus

import (
	"context"

	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// PatchStatus writes obj's status as a merge patch against orig, and skips
// the request when nothing changed: a key's periodic resync must not cost
// an API call when all is well.
func PatchStatus(ctx context.Context, c client.Client, obj, orig client.Object, status, origStatus any) error {
	if equality.Semantic.DeepEqual(status, origStatus) {
		return nil
	}
	return c.Status().Patch(ctx, obj, client.MergeFrom(orig))
}
