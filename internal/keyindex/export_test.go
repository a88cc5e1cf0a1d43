package keyindex

import "time"

// PairActive is PairIdentity's verdict alone: the key server needs the
// identity too, so only the tests that table the verdict use this.
func (x *Index) PairActive(namespace, name, accessKeyID string, now time.Time) bool {
	_, ok := x.PairIdentity(namespace, name, accessKeyID, now)
	return ok
}
