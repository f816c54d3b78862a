package calibrate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/encoding"
	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"
)

// Limits on what a parquet file may make the reader allocate, in proportion
// to the file's size. parquet-go sizes buffers from the footer and page
// headers (row counts, value counts, page sizes, thrift list lengths) before
// it has read the data, so a file of a few hundred bytes could otherwise ask
// for gigabytes. The ratios are far above what real data reaches (text
// compresses 3–10×; the alpaca fixture is 0.003 rows per byte).
const (
	// maxValuesPerByte bounds the rows of a file and the values of all its
	// pages (nulls included) by maxValuesPerByte×size + minValueBudget.
	maxValuesPerByte = 64
	minValueBudget   = 1 << 16
	// maxPageRatio bounds a page's uncompressed size by
	// maxPageRatio×compressed + minPageBudget.
	maxPageRatio  = 4096
	minPageBudget = 4 << 20
	// maxFileRatio bounds the uncompressed size of all pages by
	// maxFileRatio×size + minFileBudget.
	maxFileRatio  = 1024
	minFileBudget = 64 << 20
	// maxPrealloc caps the records slice allocated up front.
	maxPrealloc = 4096
)

// readParquet reads every row group of a parquet file image of size bytes
// into records through the file's own schema, and returns that schema.
// Nested groups become map[string]any, LIST columns []any. The footer and
// every page header are checked against the file's size first (see
// checkParquetLayout), then the counts of every page (checkParquetPages).
func readParquet(path string, r io.ReaderAt, size int64) (recs []Record, schema *parquet.Schema, err error) {
	// parquet-go trusts offsets and lengths from the footer and page headers;
	// a damaged file can make it index out of range. Report that as the
	// corrupt-file error it is.
	defer func() {
		if p := recover(); p != nil {
			recs, schema, err = nil, nil, fmt.Errorf("dataset %s: corrupt parquet file: %v", path, p)
		}
	}()
	if err := checkParquetFooter(r, size); err != nil {
		return nil, nil, fmt.Errorf("dataset %s: not a readable parquet file: %w", path, err)
	}
	f, err := parquet.OpenFile(r, size, parquet.SkipBloomFilters(true), parquet.SkipPageIndex(true))
	if err != nil {
		return nil, nil, fmt.Errorf("dataset %s: not a readable parquet file: %w", path, err)
	}
	if err := checkParquetLayout(f.Metadata(), r, size); err != nil {
		return nil, nil, fmt.Errorf("dataset %s: corrupt parquet file: %w", path, err)
	}
	if err := checkParquetPages(f); err != nil {
		return nil, nil, fmt.Errorf("dataset %s: corrupt parquet file: %w", path, err)
	}
	rd := parquet.NewReader(f, f.Schema())
	defer rd.Close()
	n := f.NumRows()
	recs = make([]Record, 0, min(n, maxPrealloc))
	for i := int64(0); i < n; i++ {
		m := map[string]any{}
		if err := rd.Read(&m); err != nil {
			if err == io.EOF {
				return nil, nil, fmt.Errorf("dataset %s: corrupt parquet file: %d rows, want %d from the footer", path, i, n)
			}
			return nil, nil, fmt.Errorf("dataset %s: row %d: %w", path, i, err)
		}
		if col, bad := invalidUTF8Path(m); bad {
			return nil, nil, fmt.Errorf("dataset %s: row %d: column %q: invalid UTF-8", path, i, col)
		}
		recs = append(recs, Record{Source: path, Index: int(i), Fields: m})
	}
	return recs, f.Schema(), nil
}

// checkParquetFooter checks the magic numbers and that the footer (the
// FileMetaData thrift struct) lies inside the file and holds no list or
// binary longer than its own bytes, before parquet-go allocates for it.
func checkParquetFooter(r io.ReaderAt, size int64) error {
	if size < 12 {
		return fmt.Errorf("%d bytes, too short for the PAR1 magic numbers and footer length", size)
	}
	var tail [8]byte
	if _, err := r.ReadAt(tail[:], size-8); err != nil {
		return fmt.Errorf("reading the footer length: %w", err)
	}
	switch string(tail[4:]) {
	case "PAR1":
	case "PARE":
		return errors.New("encrypted footer (magic PARE): encrypted parquet files are not supported")
	default:
		return fmt.Errorf("no PAR1 magic number at the end (found %q)", tail[4:])
	}
	footerLen := int64(binary.LittleEndian.Uint32(tail[:4]))
	if footerLen > size-12 {
		return fmt.Errorf("footer of %d bytes in a file of %d", footerLen, size)
	}
	footer := make([]byte, footerLen)
	if _, err := r.ReadAt(footer, size-8-footerLen); err != nil {
		return fmt.Errorf("reading the footer: %w", err)
	}
	if _, err := thriftCheck(footer); err != nil {
		return fmt.Errorf("footer: %w", err)
	}
	return nil
}

// checkParquetLayout checks the file metadata and walks the page headers of
// every column chunk: rows and row groups agree, column chunks lie inside
// the file, pages tile each chunk, and the rows, values and uncompressed
// bytes claimed stay within the budgets above. It reads only page headers.
func checkParquetLayout(md *format.FileMetaData, r io.ReaderAt, size int64) error {
	valueBudget := maxValuesPerByte*size + minValueBudget
	if md.NumRows < 0 || md.NumRows > valueBudget {
		return fmt.Errorf("footer claims %d rows for a file of %d bytes", md.NumRows, size)
	}
	var rows int64
	for g, rg := range md.RowGroups {
		if rg.NumRows < 0 || rg.NumRows > md.NumRows-rows {
			return fmt.Errorf("row group %d claims %d rows, more than the footer's %d in all", g, rg.NumRows, md.NumRows)
		}
		rows += rg.NumRows
	}
	if rows != md.NumRows {
		return fmt.Errorf("row groups hold %d rows, the footer says %d", rows, md.NumRows)
	}
	w := pageWalker{r: r, size: size, values: valueBudget, bytes: maxFileRatio*size + minFileBudget}
	for g, rg := range md.RowGroups {
		for c := range rg.Columns {
			cc := &rg.Columns[c]
			if cc.FilePath != "" {
				return fmt.Errorf("row group %d column %d: data in another file (%q) is not supported", g, c, cc.FilePath)
			}
			if err := w.chunk(&cc.MetaData); err != nil {
				return fmt.Errorf("row group %d column %d (%s): %w", g, c, strings.Join(cc.MetaData.PathInSchema, "."), err)
			}
		}
	}
	return nil
}

// pageWalker walks page headers, spending the value and byte budgets.
type pageWalker struct {
	r      io.ReaderAt
	size   int64
	values int64 // values (nulls included) the pages may still claim
	bytes  int64 // uncompressed bytes the pages may still claim
	buf    []byte
}

// chunk walks the pages of one column chunk from where parquet-go starts
// reading it (the dictionary page when there is one) to its end.
func (w *pageWalker) chunk(m *format.ColumnMetaData) error {
	start := m.DataPageOffset
	if m.DictionaryPageOffset != 0 {
		start = m.DictionaryPageOffset
	}
	if start < 0 || m.TotalCompressedSize < 0 || start > w.size || m.TotalCompressedSize > w.size-start {
		return fmt.Errorf("%d bytes at offset %d, outside the file of %d bytes", m.TotalCompressedSize, start, w.size)
	}
	if m.NumValues < 0 || m.NumValues > w.values {
		return fmt.Errorf("claims %d values for a file of %d bytes", m.NumValues, w.size)
	}
	end := start + m.TotalCompressedSize
	for pos := start; pos < end; {
		h, n, err := w.header(pos, end)
		if err != nil {
			return fmt.Errorf("page header at offset %d: %w", pos, err)
		}
		pos += n
		if err := w.spend(h, end-pos); err != nil {
			return fmt.Errorf("page at offset %d: %w", pos-n, err)
		}
		pos += int64(h.CompressedPageSize)
	}
	return nil
}

// header reads and decodes the page header at pos, which must end before
// end; it returns the header and its length in bytes.
func (w *pageWalker) header(pos, end int64) (*format.PageHeader, int64, error) {
	// Headers are small unless they carry long statistics: read 4 KiB and
	// grow while the header runs past the buffer.
	for want := int64(4 << 10); ; want *= 4 {
		k := min(want, end-pos)
		if int64(cap(w.buf)) < k {
			w.buf = make([]byte, k)
		}
		b := w.buf[:k]
		if _, err := w.r.ReadAt(b, pos); err != nil {
			return nil, 0, err
		}
		n, err := thriftCheck(b)
		if errors.Is(err, errThriftShort) && k < end-pos {
			continue
		}
		if err != nil {
			return nil, 0, err
		}
		h := new(format.PageHeader)
		if err := thrift.Unmarshal(new(thrift.CompactProtocol), b[:n], h); err != nil {
			return nil, 0, err
		}
		return h, int64(n), nil
	}
}

// spend checks one page header against the bytes left in its chunk and the
// budgets, and takes its values and uncompressed bytes from them.
func (w *pageWalker) spend(h *format.PageHeader, left int64) error {
	comp, uncomp := int64(h.CompressedPageSize), int64(h.UncompressedPageSize)
	if comp < 0 || comp > left {
		return fmt.Errorf("%d compressed bytes, %d left in the column chunk", comp, left)
	}
	if uncomp < 0 || uncomp > maxPageRatio*comp+minPageBudget {
		return fmt.Errorf("%d uncompressed bytes from %d compressed", uncomp, comp)
	}
	if uncomp > w.bytes {
		return fmt.Errorf("pages inflate to more than %d bytes in all, from a file of %d", maxFileRatio*w.size+minFileBudget, w.size)
	}
	w.bytes -= uncomp
	var values int64
	switch {
	case h.DataPageHeader.Valid:
		values = int64(h.DataPageHeader.V.NumValues)
	case h.DataPageHeaderV2.Valid:
		values = int64(h.DataPageHeaderV2.V.NumValues)
	case h.DictionaryPageHeader.Valid:
		values = int64(h.DictionaryPageHeader.V.NumValues)
	}
	if values < 0 || values > w.values {
		return fmt.Errorf("claims %d values for a file of %d bytes", values, w.size)
	}
	w.values -= values
	return nil
}

// checkParquetPages decodes every page once and checks the counts the row
// reader relies on: a page holds as many values as its levels say are not
// null, and the pages of a column chunk hold the row group's rows. Where a
// damaged file breaks them, parquet-go reads on into pooled buffers that
// still hold data of earlier reads, so that the same file could give other
// records from one read to the next
// (testdata/fuzz/FuzzReadParquet/6c6e4f6672d8b10f: a column made required
// whose pages hold nulls).
func checkParquetPages(f *parquet.File) error {
	for g, rg := range f.RowGroups() {
		for c, cc := range rg.ColumnChunks() {
			if err := checkChunkPages(cc, rg.NumRows()); err != nil {
				return fmt.Errorf("row group %d column %d: %w", g, c, err)
			}
		}
	}
	return nil
}

func checkChunkPages(cc parquet.ColumnChunk, want int64) error {
	pages := cc.Pages()
	defer pages.Close()
	var rows int64
	for i := 0; ; i++ {
		p, err := pages.ReadPage()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("page %d: %w", i, err)
		}
		n, nonNull := p.NumRows(), p.NumValues()-p.NumNulls()
		have, exact := valueCount(p.Data())
		parquet.Release(p)
		if have < nonNull || (exact && have != nonNull) {
			return fmt.Errorf("page %d: %d values, its levels say %d", i, have, nonNull)
		}
		rows += n
	}
	if rows != want {
		return fmt.Errorf("pages hold %d rows, the row group %d", rows, want)
	}
	return nil
}

// valueCount returns the number of values decoded into v; for booleans,
// bit-packed, only an upper bound (exact false).
func valueCount(v encoding.Values) (n int64, exact bool) {
	switch v.Kind() {
	case encoding.Boolean:
		return 8 * int64(len(v.Boolean())), false
	case encoding.Int32:
		return int64(len(v.Int32())), true
	case encoding.Int64:
		return int64(len(v.Int64())), true
	case encoding.Int96:
		return int64(len(v.Int96())), true
	case encoding.Float:
		return int64(len(v.Float())), true
	case encoding.Double:
		return int64(len(v.Double())), true
	case encoding.ByteArray:
		_, offsets := v.ByteArray()
		return max(int64(len(offsets))-1, 0), true
	case encoding.FixedLenByteArray:
		data, size := v.FixedLenByteArray()
		if size <= 0 {
			return 0, false
		}
		return int64(len(data) / size), len(data)%size == 0
	}
	return 0, false
}

// errThriftShort reports a thrift struct that runs past the bytes given.
var errThriftShort = errors.New("thrift struct runs past the end of its bytes")

// maxThriftDepth bounds the nesting of thrift structs and containers; the
// parquet footer nests about 6 deep.
const maxThriftDepth = 64

// thriftCheck walks the compact-protocol thrift struct at the start of b and
// returns its length. It checks what a decoder sizes its allocations from:
// every list, set, map and binary must fit in the bytes that follow its
// length, so that decoding b allocates in proportion to len(b).
func thriftCheck(b []byte) (int, error) {
	c := thriftChecker{b: b}
	if err := c.structure(0); err != nil {
		return 0, err
	}
	return c.off, nil
}

// thriftChecker walks compact-protocol thrift (Apache Thrift
// doc/specs/thrift-compact-protocol.md).
type thriftChecker struct {
	b   []byte
	off int
}

func (c *thriftChecker) left() int { return len(c.b) - c.off }

func (c *thriftChecker) skip(n uint64) error {
	if n > uint64(c.left()) {
		return errThriftShort
	}
	c.off += int(n)
	return nil
}

func (c *thriftChecker) byte() (byte, error) {
	if c.left() < 1 {
		return 0, errThriftShort
	}
	c.off++
	return c.b[c.off-1], nil
}

func (c *thriftChecker) uvarint() (uint64, error) {
	v, n := binary.Uvarint(c.b[c.off:])
	switch {
	case n == 0:
		return 0, errThriftShort
	case n < 0:
		return 0, errors.New("thrift varint overflows 64 bits")
	}
	c.off += n
	return v, nil
}

// length reads a list, set, map or binary length and checks that at least
// per×length bytes follow.
func (c *thriftChecker) length(per uint64) (uint64, error) {
	n, err := c.uvarint()
	if err != nil {
		return 0, err
	}
	if n > uint64(c.left())/per {
		return 0, fmt.Errorf("thrift length %d, only %d bytes left: %w", n, c.left(), errThriftShort)
	}
	return n, nil
}

func (c *thriftChecker) structure(depth int) error {
	if depth > maxThriftDepth {
		return fmt.Errorf("thrift structs nested deeper than %d", maxThriftDepth)
	}
	for {
		h, err := c.byte()
		if err != nil {
			return err
		}
		if h == 0 { // stop field
			return nil
		}
		if h>>4 == 0 { // field id in a varint of its own
			if _, err := c.uvarint(); err != nil {
				return err
			}
		}
		if err := c.value(h&0x0f, depth); err != nil {
			return err
		}
	}
}

// value skips one value of compact type t in a struct field (booleans live
// in the field header there).
func (c *thriftChecker) value(t byte, depth int) error {
	switch t {
	case 1, 2: // BOOLEAN_TRUE, BOOLEAN_FALSE
		return nil
	case 3: // I8
		return c.skip(1)
	case 4, 5, 6: // I16, I32, I64 (zigzag varints)
		_, err := c.uvarint()
		return err
	case 7: // DOUBLE
		return c.skip(8)
	case 8: // BINARY
		n, err := c.length(1)
		if err != nil {
			return err
		}
		return c.skip(n)
	case 9, 10: // LIST, SET
		if depth > maxThriftDepth {
			return fmt.Errorf("thrift containers nested deeper than %d", maxThriftDepth)
		}
		h, err := c.byte()
		if err != nil {
			return err
		}
		n, et := uint64(h>>4), h&0x0f
		if n == 15 {
			if n, err = c.length(1); err != nil {
				return err
			}
		} else if n > uint64(c.left()) {
			return errThriftShort
		}
		for range n {
			if err := c.element(et, depth+1); err != nil {
				return err
			}
		}
		return nil
	case 11: // MAP
		if depth > maxThriftDepth {
			return fmt.Errorf("thrift containers nested deeper than %d", maxThriftDepth)
		}
		n, err := c.length(2)
		if err != nil || n == 0 {
			return err
		}
		kv, err := c.byte()
		if err != nil {
			return err
		}
		for range n {
			if err := c.element(kv>>4, depth+1); err != nil {
				return err
			}
			if err := c.element(kv&0x0f, depth+1); err != nil {
				return err
			}
		}
		return nil
	case 12: // STRUCT
		return c.structure(depth + 1)
	}
	return fmt.Errorf("thrift type %d unknown", t)
}

// element skips one list, set or map element of compact type t: booleans
// take a byte of their own there.
func (c *thriftChecker) element(t byte, depth int) error {
	if t == 1 || t == 2 {
		return c.skip(1)
	}
	return c.value(t, depth)
}

// checkParquetText checks the parquet type of each column read as text (cols
// are dotted paths, as lookup resolves them). A path that leads to a leaf
// column, through LIST levels, must be a string column: BYTE_ARRAY with no
// logical type (parquet-go reads those as strings), STRING or ENUM; a column
// of the null type (all null, as pyarrow writes an empty column) passes too.
// Paths to structs, lists of structs and maps, and paths the schema does not
// hold, are left to the checks of each value.
func checkParquetText(path string, schema *parquet.Schema, cols []string) error {
	for _, c := range cols {
		if t, bad := nonStringColumn(schema, c); bad {
			return fmt.Errorf("%s: column %q: parquet %s, want a string (BYTE_ARRAY, STRING)", path, c, t)
		}
	}
	return nil
}

// nonStringColumn reports whether col leads to a leaf column that does not
// hold strings, and that column's type.
func nonStringColumn(schema parquet.Node, col string) (typ string, bad bool) {
	// Type() panics on some nodes of damaged schemas: leave those to the
	// value checks.
	defer func() {
		if recover() != nil {
			typ, bad = "", false
		}
	}()
	n, ok := schemaLookup(schema, col)
	if !ok {
		return "", false
	}
	for {
		el, isList := listElement(n)
		if !isList {
			break
		}
		n = el
	}
	if !n.Leaf() {
		return "", false
	}
	t := n.Type()
	var lt format.LogicalTypeValue
	if l := t.LogicalType(); l != nil {
		lt = l.Value
	}
	switch lt.(type) {
	case *format.StringType, *format.EnumType, *format.NullType:
		return "", false
	case nil:
		if t.Kind() == parquet.ByteArray {
			return "", false
		}
	}
	typ = t.Kind().String()
	if t.Kind() == parquet.FixedLenByteArray {
		typ += fmt.Sprintf("(%d)", t.Length())
	}
	if lt != nil {
		typ += " (" + lt.String() + ")"
	}
	return typ, true
}

// schemaLookup resolves a dotted column path in a schema group as lookup
// does in a record: a name holding dots whole first, LIST columns stepped
// through to their elements, their "list"/"element"/"item" levels skipped.
func schemaLookup(n parquet.Node, path string) (parquet.Node, bool) {
	if f := fieldOf(n, path); f != nil {
		return f, true
	}
	head, rest, found := strings.Cut(path, ".")
	if !found {
		return nil, false
	}
	f := fieldOf(n, head)
	if f == nil {
		return nil, false
	}
	return schemaLookupIn(f, rest)
}

func schemaLookupIn(n parquet.Node, path string) (parquet.Node, bool) {
	if path == "" {
		return n, true
	}
	if el, ok := listElement(n); ok {
		head, rest, _ := strings.Cut(path, ".")
		if head == "list" || head == "element" || head == "item" {
			return schemaLookupIn(n, rest)
		}
		return schemaLookupIn(el, path)
	}
	if n.Leaf() || isMap(n) {
		return nil, false
	}
	return schemaLookup(n, path)
}

func fieldOf(n parquet.Node, name string) parquet.Node {
	for _, f := range n.Fields() {
		if f.Name() == name {
			return f
		}
	}
	return nil
}

func logical(n parquet.Node) format.LogicalTypeValue {
	if n.Leaf() {
		return nil
	}
	if l := n.Type().LogicalType(); l != nil {
		return l.Value
	}
	return nil
}

func isMap(n parquet.Node) bool {
	_, ok := logical(n).(*format.MapType)
	return ok
}

// listElement returns the element node of a LIST group: the repeated child
// when it is a leaf or has several fields (the two-level form), else the
// repeated child's only field (the three-level list/element form).
func listElement(n parquet.Node) (parquet.Node, bool) {
	if _, ok := logical(n).(*format.ListType); !ok {
		return nil, false
	}
	fs := n.Fields()
	if len(fs) != 1 {
		return nil, false
	}
	rep := fs[0]
	if rep.Leaf() || len(rep.Fields()) != 1 {
		return rep, true
	}
	return rep.Fields()[0], true
}
