package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/dockca/dockca/store/kv"
)

// Problem is one thing `dockca check` found wrong.
type Problem struct {
	// Where names the record or structure: "bbolt", "certificate 0a1b…",
	// "index certs_by_name", ….
	Where   string `json:"where"`
	Problem string `json:"problem"`
}

// CheckResult is what Check read: the problems of the database itself and
// the certificate records that decoded, for the CA to verify further.
type CheckResult struct {
	Problems     []Problem
	Certificates []*Certificate
	Revocations  int
	Tokens       int
}

// Check verifies the database in one read transaction: bbolt's own page
// consistency, the schema, that every record decodes, and that the indexes
// (names, renewals, revocations, used tokens) agree with the records. It
// reports problems rather than stopping at the first; the error is for
// failures to check at all.
func (s *Store) Check(ctx context.Context) (*CheckResult, error) {
	res := &CheckResult{}
	add := func(where, format string, args ...any) {
		res.Problems = append(res.Problems, Problem{Where: where, Problem: fmt.Sprintf(format, args...)})
	}
	if s.bolt != nil {
		for _, err := range s.bolt.check(ctx) {
			add("bbolt", "%v", err)
		}
	}
	err := s.view(ctx, func(tx kv.Tx) error {
		if err := checkSchema(tx); err != nil {
			add("schema", "%v", err)
			return nil
		}
		for _, b := range allBuckets {
			if tx.Bucket(b) == nil {
				add("bucket "+string(b), "missing")
			}
		}
		certs := tx.Bucket(bucketCerts)
		if certs == nil {
			return nil
		}
		if v := tx.Bucket(bucketMeta).Get(keyCA); v == nil {
			add("ca", "no certificate authority is stored")
		} else if err := json.Unmarshal(v, &CA{}); err != nil {
			add("ca", "the CA record does not decode: %v", err)
		}
		names := map[string]bool{} // name index keys the records imply
		_ = certs.ForEach(func(k, v []byte) error {
			where := fmt.Sprintf("certificate %x", k)
			var c Certificate
			if err := json.Unmarshal(v, &c); err != nil {
				add(where, "the record does not decode: %v", err)
				return nil
			}
			if key, err := serialKeyFromHex(c.Serial); err != nil || !bytes.Equal(key, k) {
				add(where, "the record's serial %q does not match its key", c.Serial)
			}
			names[string(nameKey(c.Name, k))] = true
			if tx.Bucket(bucketByName).Get(nameKey(c.Name, k)) == nil {
				add(where, "missing from the name index (name %q)", c.Name)
			}
			if r := tx.Bucket(bucketRevoked).Get(k); r != nil {
				var rev Revocation
				if err := json.Unmarshal(r, &rev); err != nil {
					add(where, "its revocation does not decode: %v", err)
				} else {
					c.Revocation = &rev
				}
			}
			res.Certificates = append(res.Certificates, &c)
			return nil
		})
		_ = tx.Bucket(bucketByName).ForEach(func(k, _ []byte) error {
			if !names[string(k)] {
				add("index certs_by_name", "entry %q names no certificate record", k)
			}
			return nil
		})
		_ = tx.Bucket(bucketRevoked).ForEach(func(k, v []byte) error {
			res.Revocations++
			if certs.Get(k) == nil {
				add(fmt.Sprintf("revocation %x", k), "revokes a certificate that has no record")
			}
			return nil
		})
		_ = tx.Bucket(bucketRenewals).ForEach(func(k, _ []byte) error {
			// A serial's bytes may themselves contain 0, so the separator
			// is any 0 that splits the entry into two stored serials.
			split := false
			for i, b := range k {
				if b == 0 && i > 0 && certs.Get(k[:i]) != nil && certs.Get(k[i+1:]) != nil {
					split = true
					break
				}
			}
			switch {
			case bytes.IndexByte(k, 0) < 0:
				add("index renewals", "malformed entry %x", k)
			case !split:
				add("index renewals", "entry %x names a certificate that has no record", k)
			}
			return nil
		})
		if tm := tx.Bucket(bucketTokenMeta); tm != nil {
			cur := tm.Cursor()
			for k, v := cur.Seek(tokenPrefix); k != nil && bytes.HasPrefix(k, tokenPrefix); k, v = cur.Next() {
				res.Tokens++
				var t Token
				if err := json.Unmarshal(v, &t); err != nil {
					add(fmt.Sprintf("token %s", k[len(tokenPrefix):]), "the record does not decode: %v", err)
				}
			}
		}
		_ = tx.Bucket(bucketTokens).ForEach(func(k, v []byte) error {
			var u UsedToken
			if err := json.Unmarshal(v, &u); err != nil {
				add(fmt.Sprintf("used token %s", k), "the record does not decode: %v", err)
				return nil
			}
			if u.Serial != "" {
				if key, err := serialKeyFromHex(u.Serial); err != nil || certs.Get(key) == nil {
					add(fmt.Sprintf("used token %s", k), "names certificate %s, which has no record", u.Serial)
				}
			}
			return nil
		})
		if v := tx.Bucket(bucketSettings).Get(keyPolicy); v != nil {
			if err := json.Unmarshal(v, &Policy{}); err != nil {
				add("policy", "the stored policy does not decode: %v", err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("check: %w", err)
	}
	return res, nil
}
