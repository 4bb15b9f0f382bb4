// Package etcdkv is the kv contract (package store/kv) on etcd, so that
// several dockca serve replicas can share one CA.
//
// Layout, under the store's prefix P (which ends in "/"):
//
//	P + bucket + 0x00 + key   a bucket's keys
//	P + bucket + 0x01         the bucket's deletion counter
//	P + 0x00 "blob/" …        chunks of values too large for one request
//
// Transactions are optimistic: reads come from one revision of the store
// and are remembered; the commit is one etcd Txn whose guards compare
// every key read (its ModRevision, zero when it was absent) and every
// range read (no key in it changed after the snapshot, and its deletion
// counter did not move), so a transaction commits only if nothing it read
// has changed: serializable, retried from the start on a conflict. That
// is how a token is spent exactly once across replicas: two replicas
// that both read it unspent cannot both commit.
package etcdkv

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dockca/dockca/store/kv"
)

const (
	// maxWrites is what one transaction may write: etcd's default
	// --max-txn-ops is 128 operations, guards and writes counted apart;
	// a few are left for deletion counters.
	maxWrites = kv.MaxOps
	// maxGuards is where a transaction stops guarding each key it read
	// and guards the whole store instead (coarser, but within 128).
	maxGuards = 120
	// blobChunk is the size of one chunk of a large value: etcd refuses
	// requests over --max-request-bytes (1.5 MiB by default).
	blobChunk = 512 << 10
	// maxAttempts bounds retries on conflicts.
	maxAttempts = 64
	pageSize    = 512
)

var blobMagic = []byte("\x00dockca-blob:")

// Backend is a kv.Backend on an etcd cluster.
type Backend struct {
	group    *kv.GroupCommit
	cli      *clientv3.Client
	prefix   string
	location string
	readOnly bool
	own      bool // Close closes cli
}

var _ kv.Backend = (*Backend)(nil)

// New returns a backend on cli under prefix (normalised to end in "/").
// location names it in messages. Close closes cli when own is set.
func New(cli *clientv3.Client, prefix, location string, readOnly, own bool) *Backend {
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	b := &Backend{cli: cli, prefix: prefix, location: location, readOnly: readOnly, own: own}
	// Shared commits outlive the writer that happens to run them.
	b.group = &kv.GroupCommit{MaxCalls: batchCalls, Lanes: batchLanes, Update: func(fn func(kv.Tx) error) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return b.Update(ctx, fn)
	}}
	return b
}

// Location implements kv.Backend.
func (b *Backend) Location() string { return b.location }

// MaxWrites implements kv.Limited.
func (b *Backend) MaxWrites() int { return maxWrites }

// Close implements kv.Backend.
func (b *Backend) Close() error {
	if b.own {
		return b.cli.Close()
	}
	return nil
}

// Client is the etcd client (for watches).
func (b *Backend) Client() *clientv3.Client { return b.cli }

// BucketKey is where key of bucket lives in etcd (for watches).
func (b *Backend) BucketKey(bucket, key []byte) string {
	return b.prefix + string(bucket) + "\x00" + string(key)
}

// View implements kv.Backend: the snapshot is the store's revision when
// the first read is made (a linearizable read, so it includes every
// transaction that committed before it, on any replica).
func (b *Backend) View(ctx context.Context, fn func(kv.Tx) error) error {
	return b.view(ctx, fn, true)
}

func (b *Backend) view(ctx context.Context, fn func(kv.Tx) error, linearizable bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t := b.newTx(ctx, false, linearizable)
	err := fn(t)
	if t.err != nil {
		// A read failed: whatever fn made of the missing value is moot.
		return t.err
	}
	return err
}

// ViewStale implements kv.StaleViewer: View from the nearest member's
// snapshot, which may lag the cluster by the time it takes to apply.
func (b *Backend) ViewStale(ctx context.Context, fn func(kv.Tx) error) error {
	return b.view(ctx, fn, false)
}

// Update implements kv.Backend.
func (b *Backend) Update(ctx context.Context, fn func(kv.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.readOnly {
		return kv.ErrReadOnly
	}
	for attempt := 0; ; attempt++ {
		// The first attempt reads from the nearest member without a
		// round of consensus (a stale read only costs a retry: the
		// commit's guards catch it); retries read linearizably.
		linearizable := attempt > 0
		t := b.newTx(ctx, true, linearizable)
		err := fn(t)
		if (err != nil || t.err != nil) && !linearizable && t.rev > 0 {
			// fn may have judged a stale read (a refusal such as "token
			// already used" must never come from one): judge again on
			// linearizable reads.
			continue
		}
		if t.err != nil {
			return t.err
		}
		if err != nil {
			return err
		}
		ok, err := t.commit()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if attempt+1 >= maxAttempts {
			return fmt.Errorf("etcd transaction: %d conflicting attempts: %w", maxAttempts, kv.ErrUnavailable)
		}
		d := time.Duration(rand.Int64N(int64(time.Millisecond) << min(attempt, 6)))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
		}
	}
}

// Batch implements kv.Backend: writers arriving together share one etcd
// transaction (kv.GroupCommit), up to batchCalls of them, so a burst of
// issuances costs one round trip and one raft entry per batch.
func (b *Backend) Batch(ctx context.Context, fn func(kv.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.readOnly {
		return kv.ErrReadOnly
	}
	return b.group.Do(fn)
}

// batchCalls is how many writers share a transaction: an issuance writes
// four keys and guards two, well within etcd's 128 operations.
const batchCalls = 16

// batchLanes is how many shared transactions run at once: one reads its
// keys (a round trip each) while another commits (a round of consensus).
// Issuances touch keys of their own, so lanes rarely conflict, and a
// conflict costs a retry, never a wrong answer (the commit's guards).
const batchLanes = 8

type write struct {
	key    string
	value  []byte
	delete bool
}

type rangeRead struct{ start, end string }

type tx struct {
	b            *Backend
	ctx          context.Context
	writable     bool
	linearizable bool
	rev          int64 // snapshot revision, 0 until the first read
	err          error // a read that failed: the transaction fails with it

	points map[string]int64 // key read -> ModRevision seen (0: absent)
	ranges []rangeRead
	writes map[string]*write
	order  []string
	// cleared buckets (DeleteBucket), with their range.
	cleared map[string]rangeRead
}

func (b *Backend) newTx(ctx context.Context, writable, linearizable bool) *tx {
	return &tx{b: b, ctx: ctx, writable: writable, linearizable: linearizable,
		points: map[string]int64{}, writes: map[string]*write{}, cleared: map[string]rangeRead{}}
}

func (t *tx) fail(err error) {
	if t.err == nil {
		t.err = err
	}
}

// get runs one read at the snapshot revision, fixing the snapshot on the
// first read.
func (t *tx) get(key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	if t.err != nil {
		return nil, t.err
	}
	o := append([]clientv3.OpOption(nil), opts...)
	if t.rev > 0 {
		o = append(o, clientv3.WithRev(t.rev))
		// A read at a fixed revision needs no consensus; a member
		// that has not applied it yet says so and is asked again
		// linearizably.
		o = append(o, clientv3.WithSerializable())
	} else if !t.linearizable {
		o = append(o, clientv3.WithSerializable())
	}
	resp, err := t.b.cli.Get(t.ctx, key, o...)
	if err != nil && t.rev > 0 && errors.Is(err, rpctypes.ErrFutureRev) {
		resp, err = t.b.cli.Get(t.ctx, key, append(opts, clientv3.WithRev(t.rev))...)
	}
	if err != nil {
		err = classify("read", err)
		t.fail(err)
		return nil, err
	}
	if t.rev == 0 {
		t.rev = resp.Header.Revision
	}
	return resp, nil
}

func classify(what string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("etcd %s: %w", what, err)
	}
	if errors.Is(err, rpctypes.ErrCompacted) {
		return fmt.Errorf("etcd %s: the snapshot was compacted away; try again: %w", what, kv.ErrUnavailable)
	}
	return fmt.Errorf("etcd %s: %v: %w", what, err, kv.ErrUnavailable)
}

// Bucket implements kv.Tx: every bucket exists on etcd.
func (t *tx) Bucket(name []byte) kv.Bucket { return &bucket{t: t, name: string(name)} }

// CreateBucketIfNotExists implements kv.Tx.
func (t *tx) CreateBucketIfNotExists(name []byte) (kv.Bucket, error) {
	if !t.writable {
		return nil, kv.ErrReadOnly
	}
	return t.Bucket(name), nil
}

// DeleteBucket implements kv.Tx. Keys put into the bucket in the same
// transaction are refused (etcd does not allow a put inside a deleted
// range in one Txn).
func (t *tx) DeleteBucket(name []byte) error {
	if !t.writable {
		return kv.ErrReadOnly
	}
	b := &bucket{t: t, name: string(name)}
	start, end := b.span()
	for _, k := range t.order {
		if k >= start && k < end {
			return errors.New("etcd: a bucket cannot be deleted and written in one transaction")
		}
	}
	t.cleared[b.name] = rangeRead{start, end}
	return nil
}

// Empty implements kv.Tx.
func (t *tx) Empty() bool {
	resp, err := t.get(t.b.prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return false
	}
	t.ranges = append(t.ranges, rangeRead{t.b.prefix, clientv3.GetPrefixRangeEnd(t.b.prefix)})
	return resp.Count == 0
}

// Writable implements kv.Tx.
func (t *tx) Writable() bool { return t.writable }

func (t *tx) put(key string, value []byte, del bool) error {
	if !t.writable {
		return kv.ErrReadOnly
	}
	for _, r := range t.cleared {
		if key >= r.start && key < r.end {
			return errors.New("etcd: a bucket cannot be deleted and written in one transaction")
		}
	}
	if _, ok := t.writes[key]; !ok {
		t.order = append(t.order, key)
	}
	t.writes[key] = &write{key: key, value: bytes.Clone(value), delete: del}
	if len(t.order)+2*len(t.cleared) > maxWrites {
		return fmt.Errorf("%d writes: %w", len(t.order), kv.ErrTooLarge)
	}
	return nil
}

// point reads one key, through the transaction's own writes.
func (t *tx) point(key string) []byte {
	if w, ok := t.writes[key]; ok {
		if w.delete {
			return nil
		}
		return w.value
	}
	for _, r := range t.cleared {
		if key >= r.start && key < r.end {
			return nil
		}
	}
	resp, err := t.get(key)
	if err != nil {
		return nil
	}
	if len(resp.Kvs) == 0 {
		t.points[key] = 0
		return nil
	}
	kvp := resp.Kvs[0]
	t.points[key] = kvp.ModRevision
	v, err := t.resolve(kvp.Value)
	if err != nil {
		t.fail(err)
		return nil
	}
	if v == nil {
		v = []byte{} // present with an empty value is not absent
	}
	return v
}

// resolve reads a large value's chunks.
func (t *tx) resolve(v []byte) ([]byte, error) {
	if !bytes.HasPrefix(v, blobMagic) {
		return v, nil
	}
	id, n, size, ok := parseBlobRef(v)
	if !ok {
		return nil, errors.New("etcd: a large value's reference is malformed")
	}
	out := make([]byte, 0, size)
	for i := range n {
		resp, err := t.get(t.b.blobKey(id, i))
		if err != nil {
			return nil, err
		}
		if len(resp.Kvs) == 0 {
			return nil, fmt.Errorf("etcd: chunk %d of a large value is missing", i)
		}
		out = append(out, resp.Kvs[0].Value...)
	}
	sum := sha256.Sum256(out)
	if hex.EncodeToString(sum[:]) != id || len(out) != size {
		return nil, errors.New("etcd: a large value does not match its checksum")
	}
	return out, nil
}

func (b *Backend) blobKey(id string, i int) string {
	return b.prefix + "\x00blob/" + id + "/" + strconv.Itoa(i)
}

func blobRef(id string, n, size int) []byte {
	return append(append([]byte(nil), blobMagic...), fmt.Sprintf("%s:%d:%d", id, n, size)...)
}

func parseBlobRef(v []byte) (id string, n, size int, ok bool) {
	parts := strings.Split(string(v[len(blobMagic):]), ":")
	if len(parts) != 3 {
		return "", 0, 0, false
	}
	n, err1 := strconv.Atoi(parts[1])
	size, err2 := strconv.Atoi(parts[2])
	return parts[0], n, size, err1 == nil && err2 == nil && n >= 0 && size >= 0
}

// commit sends the transaction: ok is false on a conflict.
func (t *tx) commit() (ok bool, err error) {
	if len(t.order) == 0 && len(t.cleared) == 0 {
		return true, nil
	}
	if t.rev == 0 {
		// Nothing was read: the snapshot is now.
		if _, err := t.get(t.b.prefix + "\x00rev"); err != nil {
			return false, err
		}
	}
	var guards []clientv3.Cmp
	if len(t.points)+2*len(t.ranges) > maxGuards {
		// Too many to guard one by one: nothing under the prefix may
		// have changed (deletions bump counters, also under it).
		guards = append(guards, clientv3.Compare(clientv3.ModRevision(t.b.prefix), "<", t.rev+1).WithPrefix())
	} else {
		keys := make([]string, 0, len(t.points))
		for k := range t.points {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			guards = append(guards, clientv3.Compare(clientv3.ModRevision(k), "=", t.points[k]))
		}
		for _, r := range t.ranges {
			// The range and, just after it, its deletion counter.
			guards = append(guards, clientv3.Compare(clientv3.ModRevision(r.start), "<", t.rev+1).WithRange(counterEnd(r.end)))
		}
	}
	var ops []clientv3.Op
	var blobs []string // chunk keys written for this commit
	for name, r := range t.cleared {
		ops = append(ops, clientv3.OpDelete(r.start, clientv3.WithRange(r.end)),
			clientv3.OpPut(t.b.prefix+name+"\x01", strconv.FormatInt(time.Now().UnixNano(), 10)))
	}
	counters := map[string]bool{}
	for _, k := range t.order {
		w := t.writes[k]
		if w.delete {
			ops = append(ops, clientv3.OpDelete(k, clientv3.WithPrevKV()))
			if c := deletionCounter(t.b.prefix, k); c != "" && !counters[c] {
				counters[c] = true
				ops = append(ops, clientv3.OpPut(c, strconv.FormatInt(time.Now().UnixNano(), 10)))
			}
			continue
		}
		v := w.value
		if len(v) > blobChunk {
			ref, keys, err := t.writeBlob(v)
			if err != nil {
				return false, err
			}
			blobs = append(blobs, keys...)
			v = ref
		}
		ops = append(ops, clientv3.OpPut(k, string(v), clientv3.WithPrevKV()))
	}
	resp, err := t.b.cli.Txn(t.ctx).If(guards...).Then(ops...).Commit()
	if err != nil {
		t.b.deleteKeys(blobs)
		if errors.Is(err, rpctypes.ErrTooManyOps) || errors.Is(err, rpctypes.ErrRequestTooLarge) {
			return false, fmt.Errorf("etcd commit: %v: %w", err, kv.ErrTooLarge)
		}
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return false, fmt.Errorf("etcd commit: %w (%w)", kv.ErrUncertain, err)
		}
		return false, fmt.Errorf("etcd commit: %v: %w", err, kv.ErrUncertain)
	}
	if !resp.Succeeded {
		t.b.deleteKeys(blobs)
		return false, nil
	}
	// Chunks of values this commit replaced are garbage now (readers of
	// older snapshots still find them by revision until compaction).
	var garbage []string
	for _, r := range resp.Responses {
		var prev []byte
		if p := r.GetResponsePut(); p != nil && p.PrevKv != nil {
			prev = p.PrevKv.Value
		} else if d := r.GetResponseDeleteRange(); d != nil && len(d.PrevKvs) > 0 {
			prev = d.PrevKvs[0].Value
		}
		if bytes.HasPrefix(prev, blobMagic) {
			if id, n, _, ok := parseBlobRef(prev); ok {
				for i := range n {
					if k := t.b.blobKey(id, i); !contains(blobs, k) {
						garbage = append(garbage, k)
					}
				}
			}
		}
	}
	t.b.deleteKeys(garbage)
	return true, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// counterEnd extends a bucket's range end (bucket + 0x01) past the
// deletion counter (bucket + 0x01 itself).
func counterEnd(end string) string {
	if strings.HasSuffix(end, "\x01") {
		return end[:len(end)-1] + "\x02"
	}
	return end
}

// deletionCounter is the counter of the bucket key belongs to.
func deletionCounter(prefix, key string) string {
	rest := strings.TrimPrefix(key, prefix)
	if i := strings.IndexByte(rest, 0); i > 0 {
		return prefix + rest[:i] + "\x01"
	}
	return ""
}

// writeBlob stores a large value as content-addressed chunks, before the
// transaction that refers to them: until it commits they are unreferenced
// (and deleted again if it does not).
func (t *tx) writeBlob(v []byte) (ref []byte, keys []string, err error) {
	sum := sha256.Sum256(v)
	id := hex.EncodeToString(sum[:])
	n := (len(v) + blobChunk - 1) / blobChunk
	for i := range n {
		k := t.b.blobKey(id, i)
		if _, err := t.b.cli.Put(t.ctx, k, string(v[i*blobChunk:min(len(v), (i+1)*blobChunk)])); err != nil {
			t.b.deleteKeys(keys)
			return nil, nil, classify("write a large value", err)
		}
		keys = append(keys, k)
	}
	return blobRef(id, n, len(v)), keys, nil
}

func (b *Backend) deleteKeys(keys []string) {
	if len(keys) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, k := range keys {
		_, _ = b.cli.Delete(ctx, k)
	}
}

type bucket struct {
	t    *tx
	name string
}

// span is the bucket's key range.
func (b *bucket) span() (start, end string) {
	p := b.t.b.prefix + b.name
	return p + "\x00", p + "\x01"
}

func (b *bucket) full(key []byte) string { s, _ := b.span(); return s + string(key) }

func (b *bucket) Get(key []byte) []byte { return b.t.point(b.full(key)) }

func (b *bucket) Put(key, value []byte) error {
	if value == nil {
		value = []byte{}
	}
	return b.t.put(b.full(key), value, false)
}

func (b *bucket) Delete(key []byte) error { return b.t.put(b.full(key), nil, true) }

func (b *bucket) Cursor() kv.Cursor {
	start, end := b.span()
	return &cursor{b: b, start: start, end: end}
}

func (b *bucket) ForEach(fn func(k, v []byte) error) error {
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return b.t.err
}

// cursor walks the snapshot's keys of a bucket merged with the
// transaction's own writes, fetching pages as it goes.
type cursor struct {
	b          *bucket
	start, end string
	page       []pair // fetched, in order, from pageFrom
	pos        int
	more       bool // keys after the page remain
	last       string
	valid      bool
	guarded    bool
}

type pair struct {
	k string
	v []byte
}

func (c *cursor) guard() {
	if !c.guarded {
		c.guarded = true
		c.b.t.ranges = append(c.b.t.ranges, rangeRead{c.start, c.end})
	}
}

// fetch loads a page of the snapshot from key from (inclusive).
func (c *cursor) fetch(from string) {
	c.page, c.pos, c.more = nil, 0, false
	if _, cleared := c.b.t.cleared[c.b.name]; cleared {
		return
	}
	c.guard()
	resp, err := c.b.t.get(from, clientv3.WithRange(c.end), clientv3.WithLimit(pageSize))
	if err != nil {
		return
	}
	for _, kvp := range resp.Kvs {
		v, err := c.b.t.resolve(kvp.Value)
		if err != nil {
			c.b.t.fail(err)
			c.page = nil
			return
		}
		if v == nil {
			v = []byte{}
		}
		c.page = append(c.page, pair{string(kvp.Key), v})
	}
	c.more = resp.More
}

// snapshotNext is the snapshot's first key >= from.
func (c *cursor) snapshotNext(from string) (pair, bool) {
	for {
		for c.pos < len(c.page) && c.page[c.pos].k < from {
			c.pos++
		}
		if c.pos < len(c.page) {
			return c.page[c.pos], true
		}
		if !c.more && c.page != nil {
			return pair{}, false
		}
		if c.page != nil && c.more {
			next := c.page[len(c.page)-1].k + "\x00"
			if next > from {
				from = next
			}
		}
		c.fetch(from)
		if len(c.page) == 0 {
			return pair{}, false
		}
	}
}

// seek is the merged view's first key >= from.
func (c *cursor) seek(from string) ([]byte, []byte) {
	if from < c.start {
		from = c.start
	}
	for {
		snap, okSnap := c.snapshotNext(from)
		// The transaction's own writes in the bucket at or after from.
		var own *write
		for _, k := range c.b.t.order {
			if k >= from && k < c.end && (own == nil || k < own.key) {
				own = c.b.t.writes[k]
			}
		}
		var k string
		var v []byte
		switch {
		case own != nil && (!okSnap || own.key <= snap.k):
			if own.delete {
				from = own.key + "\x00"
				continue
			}
			k, v = own.key, own.value
		case okSnap:
			k, v = snap.k, snap.v
		default:
			c.valid = false
			return nil, nil
		}
		c.last, c.valid = k, true
		return []byte(k[len(c.start):]), v
	}
}

func (c *cursor) First() ([]byte, []byte) {
	c.page, c.more = nil, false
	return c.seek(c.start)
}

func (c *cursor) Seek(key []byte) ([]byte, []byte) {
	c.page, c.more = nil, false
	return c.seek(c.start + string(key))
}

func (c *cursor) Next() ([]byte, []byte) {
	if !c.valid {
		return nil, nil
	}
	return c.seek(c.last + "\x00")
}

// Revision returns the store's current revision (for the CRL watch).
func (b *Backend) Revision(ctx context.Context) (int64, error) {
	resp, err := b.cli.Get(ctx, b.prefix+"\x00rev")
	if err != nil {
		return 0, err
	}
	return resp.Header.Revision, nil
}
