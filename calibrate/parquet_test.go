package calibrate

import (
	"bytes"
	"encoding/binary"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"
)

const alpacaSample = "testdata/alpaca_sample.parquet" // written by testdata/gen_seeds.go

// footerOf decodes the footer of a parquet file image.
func footerOf(t *testing.T, file []byte) (md *format.FileMetaData, start int) {
	t.Helper()
	n := int(binary.LittleEndian.Uint32(file[len(file)-8:]))
	start = len(file) - 8 - n
	md = new(format.FileMetaData)
	if err := thrift.Unmarshal(new(thrift.CompactProtocol), file[start:len(file)-8], md); err != nil {
		t.Fatal(err)
	}
	return md, start
}

// withFooter returns file with its footer replaced by footer.
func withFooter(file []byte, start int, footer []byte) []byte {
	out := append(bytes.Clone(file[:start]), footer...)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(footer)))
	return append(out, "PAR1"...)
}

// editFooter returns file with its footer metadata changed by edit.
func editFooter(t *testing.T, file []byte, edit func(*format.FileMetaData)) []byte {
	t.Helper()
	md, start := footerOf(t, file)
	edit(md)
	footer, err := thrift.Marshal(new(thrift.CompactProtocol), md)
	if err != nil {
		t.Fatal(err)
	}
	return withFooter(file, start, footer)
}

// editFirstPage returns file with the header of the first page of its first
// column chunk changed by edit.
func editFirstPage(t *testing.T, file []byte, edit func(*format.PageHeader)) []byte {
	t.Helper()
	md, _ := footerOf(t, file)
	m := md.RowGroups[0].Columns[0].MetaData
	off := m.DataPageOffset
	if m.DictionaryPageOffset != 0 {
		off = m.DictionaryPageOffset
	}
	n, err := thriftCheck(file[off:])
	if err != nil {
		t.Fatal(err)
	}
	h := new(format.PageHeader)
	if err := thrift.Unmarshal(new(thrift.CompactProtocol), file[off:off+int64(n)], h); err != nil {
		t.Fatal(err)
	}
	edit(h)
	b, err := thrift.Marshal(new(thrift.CompactProtocol), h)
	if err != nil {
		t.Fatal(err)
	}
	out := append(bytes.Clone(file[:off]), b...)
	out = append(out, file[off+int64(n):]...)
	// The header's length changed: move what follows it in the footer.
	delta := int64(len(b) - n)
	return editFooter(t, out, func(md *format.FileMetaData) {
		for g := range md.RowGroups {
			for c := range md.RowGroups[g].Columns {
				m := &md.RowGroups[g].Columns[c].MetaData
				if g == 0 && c == 0 {
					m.TotalCompressedSize += delta
				}
				if m.DataPageOffset > off {
					m.DataPageOffset += delta
				}
				if m.DictionaryPageOffset > off {
					m.DictionaryPageOffset += delta
				}
			}
		}
	})
}

// TestParquetGuards: files of a few kilobytes whose footer or page headers
// claim billions of rows, values or bytes are refused before parquet-go
// allocates for the claims.
func TestParquetGuards(t *testing.T) {
	good, err := os.ReadFile(alpacaSample)
	if err != nil {
		t.Fatal(err)
	}
	footerLen := bytes.Clone(good)
	binary.LittleEndian.PutUint32(footerLen[len(good)-8:], 0xfffffff0)
	// A footer whose schema list claims 2^31-1 elements: field 1 (version,
	// i32 1), then field 2 (schema) a list of structs with a varint size.
	listBomb := withFooter([]byte("PAR1"), 4, []byte{0x15, 0x02, 0x19, 0xfc, 0xff, 0xff, 0xff, 0xff, 0x07, 0x00, 0x00})
	tests := []struct {
		name string
		file []byte
		want string
	}{
		{"footer length beyond the file", footerLen, "footer of 4294967280 bytes"},
		{"thrift list longer than the footer", listBomb, "thrift length 2147483647"},
		{"billions of rows", editFooter(t, good, func(md *format.FileMetaData) {
			md.NumRows = 5e9
			md.RowGroups[0].NumRows = 5e9 - 2
		}), "footer claims 5000000000 rows"},
		{"row groups disagree with the footer", editFooter(t, good, func(md *format.FileMetaData) { md.NumRows++ }),
			"row groups hold 6 rows, the footer says 7"},
		{"rows the pages do not hold", editFooter(t, good, func(md *format.FileMetaData) {
			md.NumRows += 50000
			md.RowGroups[0].NumRows += 50000
		}), "pages hold 4 rows, the row group 50004"},
		{"column chunk beyond the file", editFooter(t, good, func(md *format.FileMetaData) {
			md.RowGroups[0].Columns[0].MetaData.TotalCompressedSize = 1 << 40
		}), "outside the file"},
		{"column chunk of billions of values", editFooter(t, good, func(md *format.FileMetaData) {
			md.RowGroups[0].Columns[0].MetaData.NumValues = 1 << 40
		}), "claims 1099511627776 values"},
		{"page larger than its chunk", editFirstPage(t, good, func(h *format.PageHeader) { h.CompressedPageSize = 1 << 30 }),
			"1073741824 compressed bytes"},
		{"page inflating to a gigabyte", editFirstPage(t, good, func(h *format.PageHeader) { h.UncompressedPageSize = 1 << 30 }),
			"1073741824 uncompressed bytes"},
		{"page of a billion values", editFirstPage(t, good, func(h *format.PageHeader) {
			if h.DictionaryPageHeader.Valid {
				h.DictionaryPageHeader.V.NumValues = 1 << 30
			} else {
				h.DataPageHeaderV2.V.NumValues = 1 << 30
			}
		}), "claims 1073741824 values"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, _, err := readParquet("hostile.parquet", bytes.NewReader(tc.file), int64(len(tc.file)))
			runtime.ReadMemStats(&after)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "hostile.parquet") {
				t.Errorf("error = %v, want one naming the file and containing %q", err, tc.want)
			}
			if got, limit := after.TotalAlloc-before.TotalAlloc, uint64(64<<20); got > limit {
				t.Errorf("allocated %d bytes reading %d, want at most %d", got, len(tc.file), limit)
			}
		})
	}
	t.Run("the file itself", func(t *testing.T) {
		recs, _, err := readParquet("good.parquet", bytes.NewReader(good), int64(len(good)))
		if err != nil || len(recs) != 6 {
			t.Fatalf("%d records, error %v; want 6, nil", len(recs), err)
		}
	})
}

// TestParquetTextColumns checks which columns of a schema may be read as
// text, through LIST levels, structs and dotted paths.
func TestParquetTextColumns(t *testing.T) {
	type turn struct {
		From  string `parquet:"from"`
		Value string `parquet:"value"`
	}
	type meta struct {
		Lang string `parquet:"lang"`
		N    int32  `parquet:"n"`
	}
	type row struct {
		Text  string            `parquet:"text"`
		Bin   []byte            `parquet:"bin"`
		Enum  string            `parquet:"e,enum"`
		JSON  string            `parquet:"j,json"`
		UUID  [16]byte          `parquet:"u,uuid"`
		N     int64             `parquet:"n"`
		F     float32           `parquet:"f"`
		Tags  []string          `parquet:"tags,list"`
		Nums  []int32           `parquet:"nums,list"`
		Conv  []turn            `parquet:"conv,list"`
		Meta  meta              `parquet:"meta"`
		Rep   []string          `parquet:"rep"`
		Map   map[string]string `parquet:"m"`
		Empty *int32            `parquet:"empty,optional"`
	}
	file := parquetBytes(t, []row{{JSON: `"x"`}})
	// pyarrow writes a column of nulls only as INT32 of the NULL (UNKNOWN)
	// logical type; parquet-go writes no such column, so edit one in.
	file = editFooter(t, file, func(md *format.FileMetaData) {
		for i := range md.Schema {
			if md.Schema[i].Name == "empty" {
				md.Schema[i].LogicalType = format.LogicalType{Value: &format.NullType{}}
			}
		}
	})
	_, schema, err := readParquet("s.parquet", bytes.NewReader(file), int64(len(file)))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		col  string
		want string // "" for a column that passes
	}{
		{"text", ""},
		{"bin", ""},
		{"e", ""},
		{"j", "BYTE_ARRAY (JSON)"},
		{"u", "FIXED_LEN_BYTE_ARRAY(16) (UUID)"},
		{"n", "INT64 (INT(64,true))"},
		{"f", "FLOAT"},
		{"tags", ""},
		{"tags.list.element", ""},
		{"nums", "INT32 (INT(32,true))"},
		{"conv", ""}, // a list of structs: each value is checked
		{"conv.value", ""},
		{"conv.list.element.value", ""},
		{"meta", ""},
		{"meta.lang", ""},
		{"meta.n", "INT32 (INT(32,true))"},
		{"rep", ""},
		{"m", ""},
		{"empty", ""},
		{"missing", ""},
	}
	for _, tc := range tests {
		t.Run(tc.col, func(t *testing.T) {
			got, bad := nonStringColumn(schema, tc.col)
			if got != tc.want || bad != (tc.want != "") {
				t.Errorf("nonStringColumn = %q, %v; want %q", got, bad, tc.want)
			}
		})
	}
	if err := checkParquetText("s.parquet", schema, []string{"text", "meta.n"}); err == nil ||
		err.Error() != `s.parquet: column "meta.n": parquet INT32 (INT(32,true)), want a string (BYTE_ARRAY, STRING)` {
		t.Errorf("checkParquetText = %v", err)
	}
}

// TestThriftCheck walks small compact-protocol structs.
func TestThriftCheck(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		n    int
		err  string
	}{
		{"empty struct", []byte{0x00, 0xaa}, 1, ""},
		{"i32 and binary", []byte{0x15, 0x04, 0x18, 0x02, 'h', 'i', 0x00}, 7, ""},
		{"bool list", []byte{0x19, 0x21, 0x01, 0x02, 0x00}, 5, ""},
		{"map", []byte{0x1b, 0x01, 0x88, 0x01, 'k', 0x01, 'v', 0x00}, 8, ""},
		{"nested struct", []byte{0x1c, 0x15, 0x02, 0x00, 0x00}, 5, ""},
		{"long field id", []byte{0x05, 0x20, 0x02, 0x00}, 4, ""},
		{"binary past the end", []byte{0x18, 0x05, 'h', 'i'}, 0, "thrift length 5"},
		{"list past the end", []byte{0x19, 0xf5, 0x80, 0x80, 0x04, 0x00}, 0, "thrift length 65536"},
		{"map past the end", []byte{0x1b, 0x03, 0x88, 0x00}, 0, "thrift length 3"},
		{"no stop", []byte{0x15, 0x02}, 0, "runs past the end"},
		{"varint overflow", []byte{0x16, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, 0, "overflows"},
		{"unknown type", []byte{0x1d, 0x00}, 0, "type 13 unknown"},
		{"deep nesting", bytes.Repeat([]byte{0x1c}, 100), 0, "nested deeper"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, err := thriftCheck(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || n != tc.n {
				t.Errorf("thriftCheck = %d, %v; want %d, nil", n, err, tc.n)
			}
		})
	}
}

// TestParquetWriterFiles: files parquet-go writes in every page layout pass
// the layout checks.
func TestParquetWriterFiles(t *testing.T) {
	rows := testRows(200)
	for _, tc := range []struct {
		name string
		opts []parquet.WriterOption
	}{
		{"v1 pages", []parquet.WriterOption{parquet.DataPageVersion(1)}},
		{"v2 pages zstd", []parquet.WriterOption{parquet.DataPageVersion(2), parquet.Compression(&parquet.Zstd)}},
		{"small pages", []parquet.WriterOption{parquet.PageBufferSize(256)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := parquetBytes(t, rows, tc.opts...)
			recs, _, err := readParquet("w.parquet", bytes.NewReader(file), int64(len(file)))
			if err != nil || len(recs) != len(rows) {
				t.Fatalf("%d records, error %v; want %d", len(recs), err, len(rows))
			}
		})
	}
}
