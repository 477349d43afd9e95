#include <nn/atomic_file.hpp>
#include <nn/safetensors.hpp>

#include <autodiff/tensor.hpp>

#include <fmt/format.h>
#include <fmt/std.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <set>
#include <tuple>
#include <utility>

#include <sys/stat.h>

namespace nn::safetensors {
namespace {

// The reference implementation's limit: parsing a larger JSON header is a denial of service.
constexpr std::uint64_t max_header_bytes = 100'000'000;

constexpr std::array<std::pair<std::string_view, std::size_t>, 15> dtypes = {{
    {"BOOL", 1},
    {"U8", 1},
    {"I8", 1},
    {"F8_E5M2", 1},
    {"F8_E4M3", 1},
    {"U16", 2},
    {"I16", 2},
    {"F16", 2},
    {"BF16", 2},
    {"U32", 4},
    {"I32", 4},
    {"F32", 4},
    {"U64", 8},
    {"I64", 8},
    {"F64", 8},
}};

bool mul_overflows(std::uint64_t a, std::uint64_t b, std::uint64_t& out) { return __builtin_mul_overflow(a, b, &out); }

// Element count of `shape` under the tensors' rule (autodiff::max_numel), or nullopt if a dim is
// negative or the product of the non-zero dims exceeds 2^60. A zero dim makes the count 0, but does
// not excuse the other dims: [2^62, 2^62, 0] would load and then fail (or overflow) as a tensor.
std::optional<std::uint64_t> checked_numel(std::span<const std::int64_t> shape) {
  const auto n = autodiff::checked_numel(shape);
  if (!n) return std::nullopt;
  return static_cast<std::uint64_t>(*n);
}

// A short description of a JSON value for a message. Only scalars and short flat arrays are
// printed: dump() recurses, and a header may nest arrays millions deep.
std::string describe(const nlohmann::json& v) {
  if (v.is_primitive()) {
    auto text = v.dump();
    return text.size() <= 40 ? text : text.substr(0, 37) + "...";
  }
  if (v.is_array() && v.size() <= 4 && std::all_of(v.begin(), v.end(), [](const auto& x) { return x.is_number(); }))
    return v.dump();
  return fmt::format("a JSON {} of {} elements", v.type_name(), v.size());
}

std::string shape_str(std::span<const std::int64_t> shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

// --- writing ---

[[noreturn]] void save_fail(std::string_view origin, std::string_view what) {
  throw autodiff::Error(fmt::format("nn: safetensors save: {}: {}", origin, what));
}

// The padded header; checks every entry first so that nothing is written for an invalid File.
std::string make_header(const File& file, std::string_view origin) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!file.metadata.empty()) header["__metadata__"] = file.metadata;
  std::uint64_t offset = 0;
  for (const auto& [name, e] : file.tensors) {
    if (name == "__metadata__") save_fail(origin, "a tensor cannot be named \"__metadata__\"");
    auto size = dtype_size(e.dtype);
    if (!size) save_fail(origin, fmt::format("tensor '{}': unknown dtype '{}'", name, e.dtype));
    auto numel = checked_numel(e.shape);
    if (!numel) save_fail(origin, fmt::format("tensor '{}': invalid shape {}", name, shape_str(e.shape)));
    std::uint64_t bytes = 0;
    if (mul_overflows(*numel, *size, bytes) || bytes != e.data.size())
      save_fail(origin, fmt::format("tensor '{}': shape {} of {} needs {} x {} bytes but data has {}", name,
                                    shape_str(e.shape), e.dtype, *numel, *size, e.data.size()));
    header[name] = {{"dtype", e.dtype}, {"shape", e.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& ex) {
    save_fail(origin, fmt::format("a tensor name or metadata string is not valid UTF-8 ({})", ex.what()));
  }
  text.resize((text.size() + 7) / 8 * 8, ' ');
  return text;
}

void write_all(const File& file, const std::string& header, FileSink& sink) {
  std::array<std::byte, 8> length{};
  for (std::size_t i = 0; i < 8; ++i)
    length[i] = static_cast<std::byte>((std::uint64_t{header.size()} >> (8 * i)) & 0xFF);
  sink.write(length);
  sink.write(header);
  for (const auto& [name, e] : file.tensors)
    sink.write(e.data);
}

// --- reading ---

class Parser {
public:
  Parser(std::span<const std::byte> bytes, std::string_view origin) : bytes_(bytes), origin_(origin) {}
  // For a regular file: `bytes` holds the length field and (when its length is plausible) the
  // header, and the `rest` bytes after them are read from `file` straight into the entries, so
  // that the data is held once, not twice (a whole-file buffer and the entries' copies).
  Parser(std::span<const std::byte> bytes, std::uint64_t rest, std::FILE* file, std::string_view origin)
      : bytes_(bytes), origin_(origin), rest_(rest), file_(file) {}

  File run() {
    if (bytes_.size() < 8) fail(fmt::format("{} bytes is too short for the 8-byte header length", bytes_.size()));
    std::uint64_t n = 0;
    for (std::size_t i = 0; i < 8; ++i)
      n |= std::uint64_t(std::to_integer<std::uint8_t>(bytes_[i])) << (8 * i);
    if (n == 0) fail("header length is 0");
    if (n > max_header_bytes) fail(fmt::format("header length {} exceeds the limit of {} bytes", n, max_header_bytes));
    const std::uint64_t after = bytes_.size() - 8 + rest_;
    if (n > after) fail(fmt::format("header length {} exceeds the {} bytes after the length field", n, after));
    if (n > bytes_.size() - 8) fail("the file ended inside its header (was it truncated while being read?)");
    auto header = bytes_.subspan(8, static_cast<std::size_t>(n));
    data_.bytes = bytes_.subspan(8 + static_cast<std::size_t>(n));
    data_.length = after - n;
    if (header[0] != std::byte{'{'}) fail("header does not start with '{'");
    // nlohmann's lexer takes a NUL byte for the end of input and would ignore whatever follows it.
    // Valid JSON never holds a raw NUL, so any NUL is an error.
    if (auto nul = std::find(header.begin(), header.end(), std::byte{0}); nul != header.end())
      fail(fmt::format("header is not valid JSON: NUL byte at offset {}", nul - header.begin()));

    nlohmann::json json = parse_json(header);
    if (!json.is_object()) fail("header is not a JSON object");

    File out;
    struct Range {
      std::uint64_t begin, end;
      const std::string* name;
    };
    std::vector<Range> ranges;
    for (const auto& [name, value] : json.items()) {
      if (name == "__metadata__") {
        read_metadata(value, out.metadata);
        continue;
      }
      auto [it, inserted] = out.tensors.try_emplace(name);
      (void)inserted; // keys are unique: parse_json rejects duplicates
      auto [begin, end] = read_entry(name, value, it->second);
      ranges.push_back({begin, end, &it->first});
    }
    check_tiling(ranges);
    for (const auto& r : ranges) { // sorted and tiling the data: in file order
      auto& data = out.tensors.at(*r.name).data;
      const auto size = static_cast<std::size_t>(r.end - r.begin);
      if (file_) {
        data.resize(size);
        if (size > 0 && std::fread(data.data(), 1, size, file_) != size)
          fail(*r.name, std::ferror(file_) ? fmt::format("read error: {}", std::strerror(errno))
                                           : std::string("the file ended early (was it truncated while being read?)"));
      } else {
        auto src = data_.bytes.subspan(static_cast<std::size_t>(r.begin), size);
        data.assign(src.begin(), src.end());
      }
    }
    if (file_ && std::fgetc(file_) != EOF)
      fail("the file is longer than its size when opened (was it written to while being read?)");
    return out;
  }

private:
  [[noreturn]] void fail(std::string_view what) const {
    throw autodiff::Error(fmt::format("nn: safetensors: {}: {}", origin_, what));
  }
  [[noreturn]] void fail(std::string_view tensor, std::string_view what) const {
    throw autodiff::Error(fmt::format("nn: safetensors: {}: tensor '{}': {}", origin_, tensor, what));
  }

  // Builds the header's JSON through nlohmann's SAX interface, for three reasons:
  // - duplicate keys: nlohmann keeps the last silently; the spec forbids them, and a file whose
  //   meaning depends on which duplicate wins must not load. Each key is looked up in its object
  //   as it arrives.
  // - time: the callback parser used before rescans the parent object after every closed object,
  //   which made 80,000 tensors take 25 s; this is linear (times log n for the map lookups).
  // - memory: a DOM of deeply nested arrays costs about 75 bytes per '['. A valid header is at
  //   most 3 deep (header, entry, shape), so values are kept only to depth max_kept_depth; a
  //   container one level deeper is kept empty (so that messages can still say what it is) and
  //   whatever is deeper still is skipped. The DOM is then at most about 16 bytes per header byte.
  class Builder {
  public:
    using json = nlohmann::json;
    static constexpr std::size_t max_kept_depth = 4;
    explicit Builder(const Parser& p) : p_(p) {}
    json root;

    bool null() { return value(nullptr); }
    bool boolean(bool v) { return value(v); }
    bool number_integer(json::number_integer_t v) { return value(v); }
    bool number_unsigned(json::number_unsigned_t v) { return value(v); }
    bool number_float(json::number_float_t v, const json::string_t&) { return value(v); }
    bool string(json::string_t& v) { return value(std::move(v)); }
    bool binary(json::binary_t& v) { return value(json::binary(std::move(v))); }
    bool start_object(std::size_t) { return open(json::object()); }
    bool start_array(std::size_t) { return open(json::array()); }
    bool end_object() { return close(); }
    bool end_array() { return close(); }
    bool key(json::string_t& k) {
      if (depth_ > kept_.size()) return true; // inside a skipped container
      json& object = *kept_.back();
      if (object.contains(k)) p_.fail(fmt::format("header has the key \"{}\" twice in one object", k));
      slot_ = &object[k];
      return true;
    }
    bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& ex) {
      p_.fail(fmt::format("header is not valid JSON: {}", ex.what()));
    }

  private:
    // Where the next value goes: the root, a new array element, or the slot of the last key.
    json* place() {
      if (kept_.empty()) return &root;
      json& parent = *kept_.back();
      if (parent.is_array()) return &parent.emplace_back();
      return slot_;
    }
    template <class V> bool value(V&& v) {
      if (depth_ <= kept_.size()) *place() = json(std::forward<V>(v));
      return true;
    }
    bool open(json empty) {
      // depth_ counts the open containers; kept_ holds those stored (all up to max_kept_depth).
      if (depth_++ == kept_.size()) {
        json* at = place();
        *at = std::move(empty);
        if (kept_.size() < max_kept_depth) kept_.push_back(at);
      }
      return true;
    }
    bool close() {
      if (depth_-- == kept_.size()) kept_.pop_back();
      return true;
    }
    const Parser& p_;
    std::vector<json*> kept_;
    std::size_t depth_ = 0;
    json* slot_ = nullptr;
  };

  nlohmann::json parse_json(std::span<const std::byte> header) const {
    Builder builder(*this);
    auto first = reinterpret_cast<const std::uint8_t*>(header.data());
    try {
      nlohmann::json::sax_parse(first, first + header.size(), &builder);
    } catch (const nlohmann::json::exception& ex) {
      fail(fmt::format("header is not valid JSON: {}", ex.what()));
    }
    return std::move(builder.root);
  }

  void read_metadata(const nlohmann::json& value, std::map<std::string, std::string>& out) const {
    if (!value.is_object()) fail(fmt::format("__metadata__ is a JSON {}, not an object", value.type_name()));
    for (const auto& [key, v] : value.items()) {
      if (!v.is_string())
        fail(fmt::format("__metadata__ value of \"{}\" is a JSON {}, not a string", key, v.type_name()));
      out.emplace(key, v.get<std::string>());
    }
  }

  std::uint64_t non_negative(const std::string& name, const char* field, const nlohmann::json& v) const {
    if (v.is_number_unsigned()) return v.get<std::uint64_t>();
    if (v.is_number_integer() && v.get<std::int64_t>() >= 0) return static_cast<std::uint64_t>(v.get<std::int64_t>());
    fail(name, fmt::format("{} holds {}, not a non-negative integer", field, describe(v)));
  }

  std::pair<std::uint64_t, std::uint64_t> read_entry(const std::string& name, const nlohmann::json& v, Entry& e) const {
    if (!v.is_object()) fail(name, fmt::format("entry is a JSON {}, not an object", v.type_name()));
    for (const auto& [key, unused] : v.items())
      if (key != "dtype" && key != "shape" && key != "data_offsets")
        fail(name, fmt::format("unexpected key \"{}\" (an entry has exactly dtype, shape, data_offsets)", key));
    for (const char* key : {"dtype", "shape", "data_offsets"})
      if (!v.contains(key)) fail(name, fmt::format("missing key \"{}\"", key));

    const auto& dtype = v["dtype"];
    if (!dtype.is_string()) fail(name, fmt::format("dtype is a JSON {}, not a string", dtype.type_name()));
    e.dtype = dtype.get<std::string>();
    auto size = dtype_size(e.dtype);
    if (!size) fail(name, fmt::format("unknown dtype \"{}\"", e.dtype));

    const auto& shape = v["shape"];
    if (!shape.is_array()) fail(name, fmt::format("shape is a JSON {}, not an array", shape.type_name()));
    for (const auto& d : shape) {
      auto dim = non_negative(name, "shape", d);
      if (dim > static_cast<std::uint64_t>(INT64_MAX)) fail(name, fmt::format("shape dim {} is too large", dim));
      e.shape.push_back(static_cast<std::int64_t>(dim));
    }

    const auto& offsets = v["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2)
      fail(name, fmt::format("data_offsets is {}, not an array of two integers", describe(offsets)));
    auto begin = non_negative(name, "data_offsets", offsets[0]);
    auto end = non_negative(name, "data_offsets", offsets[1]);
    if (end < begin) fail(name, fmt::format("data_offsets [{}, {}] end before they begin", begin, end));
    if (end > data_.size())
      fail(name,
           fmt::format("data_offsets [{}, {}] go past the end of the {}-byte data buffer", begin, end, data_.size()));

    auto numel = checked_numel(e.shape);
    std::uint64_t bytes = 0;
    if (!numel || mul_overflows(*numel, *size, bytes))
      fail(name, fmt::format("shape {} has too many elements (the product of its non-zero dims must be at most 2^60)",
                             shape_str(e.shape)));
    if (end - begin != bytes)
      fail(name, fmt::format("data_offsets [{}, {}] hold {} bytes but shape {} of {} needs {}", begin, end, end - begin,
                             shape_str(e.shape), e.dtype, bytes));
    return {begin, end};
  }

  template <class Range> void check_tiling(std::vector<Range>& ranges) const {
    std::sort(ranges.begin(), ranges.end(),
              [](const Range& a, const Range& b) { return std::tie(a.begin, a.end) < std::tie(b.begin, b.end); });
    std::uint64_t covered = 0;
    const std::string* last = nullptr;
    for (const auto& r : ranges) {
      if (r.begin < covered)
        fail(*r.name,
             fmt::format("data_offsets [{}, {}] overlap tensor '{}' which ends at {}", r.begin, r.end, *last, covered));
      if (r.begin > covered)
        fail(*r.name, fmt::format("data_offsets [{}, {}] leave bytes [{}, {}) of the data buffer unused", r.begin,
                                  r.end, covered, r.begin));
      covered = r.end;
      last = r.name;
    }
    if (covered != data_.size())
      fail(fmt::format("the tensors cover {} bytes of the {}-byte data buffer; the rest is unused", covered,
                       data_.size()));
  }

  std::span<const std::byte> bytes_;
  // The data buffer: its length, and its bytes when they are in memory (not read from file_).
  struct Data {
    std::span<const std::byte> bytes;
    std::uint64_t length = 0;
    std::uint64_t size() const { return length; }
  } data_;
  std::string_view origin_;
  std::uint64_t rest_ = 0;
  std::FILE* file_ = nullptr;
};

} // namespace

std::optional<std::size_t> dtype_size(std::string_view dtype) {
  for (const auto& [name, size] : dtypes)
    if (name == dtype) return size;
  return std::nullopt;
}

std::int64_t Entry::numel() const {
  auto n = checked_numel(shape);
  if (!n) throw autodiff::Error(fmt::format("nn: safetensors: Entry::numel: invalid shape {}", shape_str(shape)));
  return static_cast<std::int64_t>(*n);
}

std::vector<std::byte> serialize(const File& file) {
  std::string header = make_header(file, "(in memory)");
  std::vector<std::byte> out;
  std::size_t total = 8 + header.size();
  for (const auto& [name, e] : file.tensors)
    total += e.data.size();
  out.reserve(total);
  out.resize(8);
  for (std::size_t i = 0; i < 8; ++i)
    out[i] = static_cast<std::byte>((std::uint64_t{header.size()} >> (8 * i)) & 0xFF);
  auto h = std::as_bytes(std::span(header));
  out.insert(out.end(), h.begin(), h.end());
  for (const auto& [name, e] : file.tensors)
    out.insert(out.end(), e.data.begin(), e.data.end());
  return out;
}

void save(const std::filesystem::path& path, const File& file) {
  std::string header = make_header(file, fmt::format("{}", path));
  write_file_atomically(path, [&](FileSink& sink) { write_all(file, header, sink); });
}

File load(const std::filesystem::path& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw autodiff::Error(fmt::format("nn: safetensors: {}: cannot open: {}", path, std::strerror(errno)));
  struct Closer {
    std::FILE* f;
    ~Closer() { std::fclose(f); }
  } closer{f};
  const std::string origin = fmt::format("{}", path);
  auto read_error = [&] {
    return autodiff::Error(fmt::format("nn: safetensors: {}: read error: {}", path, std::strerror(errno)));
  };
  // A regular file: the length field and header first, then the data straight into the entries
  // (peak memory about the file's size, not twice it).
  struct stat st {};
  if (::fstat(::fileno(f), &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= 8) {
    const auto size = static_cast<std::uint64_t>(st.st_size);
    std::vector<std::byte> head(8);
    if (std::fread(head.data(), 1, 8, f) != 8) throw read_error();
    std::uint64_t n = 0;
    for (std::size_t i = 0; i < 8; ++i)
      n |= std::uint64_t(std::to_integer<std::uint8_t>(head[i])) << (8 * i);
    if (n > 0 && n <= max_header_bytes && n <= size - 8) {
      head.resize(8 + static_cast<std::size_t>(n));
      if (std::fread(head.data() + 8, 1, static_cast<std::size_t>(n), f) != n) {
        if (std::ferror(f)) throw read_error();
        n = 0; // shorter than when opened: the parser reports it from the sizes
        head.resize(8);
      }
    }
    return Parser(head, size - head.size(), f, origin).run();
  }
  // Anything else (a pipe, a device) is read to EOF, without trusting a size taken beforehand.
  std::vector<std::byte> bytes;
  std::array<std::byte, 1 << 16> buffer;
  std::size_t n = 0;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), f)) > 0)
    bytes.insert(bytes.end(), buffer.begin(), buffer.begin() + n);
  if (std::ferror(f)) throw read_error();
  return parse(bytes, origin);
}

File parse(std::span<const std::byte> bytes, std::string_view origin) { return Parser(bytes, origin).run(); }

} // namespace nn::safetensors
