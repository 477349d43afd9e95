// DataLoader batching and shuffling, synthetic datasets, checkpoints and bitwise resume.

#include <nn/nn.hpp>

#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <unistd.h>

using autodiff::DType;
using autodiff::Tensor;

namespace {
std::shared_ptr<nn::TensorDataset> numbered(std::int64_t n) {
  std::vector<double> x;
  std::vector<std::int64_t> y;
  for (std::int64_t i = 0; i < n; ++i)
    x.push_back(static_cast<double>(i)), x.push_back(-static_cast<double>(i)), y.push_back(i);
  return std::make_shared<nn::TensorDataset>(autodiff::from_vector(x, {n, 2}, DType::float64),
                                             autodiff::from_vector(y, {n}));
}
struct TempDir {
  std::filesystem::path path =
      std::filesystem::temp_directory_path() / ("tapegrad_nn_test." + std::to_string(::getpid()));
  TempDir() { std::filesystem::create_directories(path); }
  ~TempDir() { std::filesystem::remove_all(path); }
};
} // namespace

BOOST_AUTO_TEST_SUITE(data)

BOOST_AUTO_TEST_CASE(batches_cover_the_data_in_order) {
  nn::DataLoader loader(numbered(10), {.batch_size = 4});
  BOOST_TEST(loader.batches_per_epoch() == 3);
  std::vector<std::int64_t> seen;
  std::vector<std::int64_t> sizes;
  for (const nn::Batch& b : loader) {
    sizes.push_back(b.targets.numel());
    for (auto v : b.targets.data<std::int64_t>())
      seen.push_back(v);
    const auto x = b.inputs.to_vector();
    for (std::int64_t i = 0; i < b.targets.numel(); ++i)
      BOOST_TEST(x[static_cast<std::size_t>(2 * i + 1)] ==
                 -static_cast<double>(b.targets.data<std::int64_t>()[static_cast<std::size_t>(i)]));
  }
  BOOST_TEST(sizes == std::vector<std::int64_t>({4, 4, 2}), boost::test_tools::per_element());
  BOOST_TEST(seen == std::vector<std::int64_t>({0, 1, 2, 3, 4, 5, 6, 7, 8, 9}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(shuffle_is_seeded_per_epoch_and_drop_last_drops) {
  auto order = [](std::uint64_t seed, std::int64_t epoch) {
    nn::DataLoader loader(numbered(50), {.batch_size = 8, .shuffle = true, .drop_last = true, .seed = seed});
    loader.set_epoch(epoch);
    std::vector<std::int64_t> out;
    for (const nn::Batch& b : loader) {
      BOOST_TEST(b.targets.numel() == 8);
      for (auto v : b.targets.data<std::int64_t>())
        out.push_back(v);
    }
    return out;
  };
  const auto a = order(1, 0), again = order(1, 0), next = order(1, 1), other = order(2, 0);
  BOOST_TEST(a.size() == 48u);
  BOOST_TEST(a == again, boost::test_tools::per_element());
  BOOST_TEST(a != next);
  BOOST_TEST(a != other);
  BOOST_TEST(std::set<std::int64_t>(a.begin(), a.end()).size() == 48u); // no repeats
}

BOOST_AUTO_TEST_CASE(byte_images_are_scaled_per_batch) {
  std::vector<std::uint8_t> pixels{0, 255, 51, 102, 10, 20};
  auto data = std::make_shared<nn::ByteImageDataset>(pixels, 2, std::vector<std::int64_t>{7, 8, 9});
  const std::int64_t idx[2] = {2, 0};
  const nn::Batch b = data->batch(idx);
  BOOST_TEST((b.inputs.shape() == autodiff::Shape({2, 2})));
  const float s = 1.0f / 255.0f; // the dataset multiplies by the float reciprocal
  BOOST_TEST(b.inputs.to_vector() == std::vector<double>({10 * s, 20 * s, 0.0, 255 * s}),
             boost::test_tools::per_element());
  BOOST_TEST(b.targets.to_vector() == std::vector<double>({9, 7}), boost::test_tools::per_element());
  BOOST_TEST(data->get(1).inputs.to_vector() == std::vector<double>({51 * s, 102 * s}),
             boost::test_tools::per_element());
  BOOST_CHECK_THROW(nn::ByteImageDataset(pixels, 4, {1, 2}), autodiff::Error);
  // 4 images of 2^62 pixels: the product wraps to 0 bytes in 64 bits, and no tensor holds one image.
  BOOST_CHECK_THROW(nn::ByteImageDataset({}, std::int64_t{1} << 62, {1, 2, 3, 4}), autodiff::Error);
  BOOST_CHECK_THROW(nn::ByteImageDataset({}, std::int64_t{1} << 62, {}), autodiff::Error);
  const std::int64_t bad[1] = {3};
  BOOST_CHECK_THROW(data->batch(bad), autodiff::Error);
}

// nn/src/data.cpp prefetches the rows a batch reads 8 places ahead: batches longer than that, in a
// scattered order, copy every row (the first, the ones past the prefetch start, the last), and an
// index out of range anywhere, even in the prefetched part, is an error before anything is read.
BOOST_AUTO_TEST_CASE(long_scattered_batches_copy_every_row) {
  constexpr std::int64_t images = 40, per = 100;
  std::vector<std::uint8_t> pixels(static_cast<std::size_t>(images * per));
  std::vector<double> floats(pixels.size());
  for (std::size_t k = 0; k < pixels.size(); ++k)
    floats[k] = pixels[k] = static_cast<std::uint8_t>((k * 7 + k / per) % 256);
  std::vector<std::int64_t> labels(static_cast<std::size_t>(images));
  std::iota(labels.begin(), labels.end(), 100);
  const auto bytes = std::make_shared<nn::ByteImageDataset>(pixels, per, labels, 1.0f);
  const auto tensors = std::make_shared<nn::TensorDataset>(
      autodiff::from_vector(floats, {images, per}),
      autodiff::from_vector(std::vector<double>(labels.begin(), labels.end()), {images}, autodiff::DType::int64));
  std::vector<std::int64_t> idx;
  for (std::int64_t k = 0; k < 30; ++k)
    idx.push_back((k * 17) % images);
  for (const nn::Batch& b : {bytes->batch(idx), tensors->batch(idx)}) {
    const auto x = b.inputs.to_vector();
    const auto y = b.targets.to_vector();
    int wrong = 0;
    for (std::size_t k = 0; k < idx.size(); ++k) {
      const auto i = static_cast<std::size_t>(idx[k]);
      wrong += y[k] != static_cast<double>(labels[i]);
      for (std::size_t p = 0; p < static_cast<std::size_t>(per); ++p)
        wrong += x[k * per + p] != static_cast<double>(pixels[i * per + p]);
    }
    BOOST_TEST(wrong == 0);
  }
  idx[20] = images; // past the end, in the part the first rows prefetch
  BOOST_CHECK_THROW(bytes->batch(idx), autodiff::Error);
  BOOST_CHECK_THROW(tensors->batch(idx), autodiff::Error);
  idx[20] = -1;
  BOOST_CHECK_THROW(bytes->batch(idx), autodiff::Error);
}

// prefetch is a hint (the DataLoader asks for the next batch's rows while one trains): it accepts
// any indices without failing, skips those out of range (a row pointer past the data would be
// undefined behaviour, which UBSan reports under scripts/test.sh), and changes no batch.
BOOST_AUTO_TEST_CASE(prefetch_is_a_hint_that_never_fails) {
  const auto tensors = numbered(20);
  std::vector<std::uint8_t> pixels(20 * 3);
  std::iota(pixels.begin(), pixels.end(), std::uint8_t{0});
  std::vector<std::int64_t> labels(20);
  std::iota(labels.begin(), labels.end(), 0);
  const nn::ByteImageDataset bytes(pixels, 3, labels, 1.0f);
  constexpr std::int64_t huge = std::numeric_limits<std::int64_t>::max();
  const std::vector<std::int64_t> odd{0, 19, -1, 20, huge, std::numeric_limits<std::int64_t>::min(), 7};
  const std::vector<std::int64_t> good{19, 0, 7};
  for (const nn::Dataset* d :
       {static_cast<const nn::Dataset*>(tensors.get()), static_cast<const nn::Dataset*>(&bytes)}) {
    const auto before = d->batch(good).inputs.to_vector();
    BOOST_CHECK_NO_THROW(d->prefetch(odd));
    BOOST_CHECK_NO_THROW(d->prefetch({}));
    BOOST_TEST(d->batch(good).inputs.to_vector() == before);
  }
  // A DataLoader over a dataset whose prefetch is the default (a no-op) still gives every example.
  struct Plain : nn::Dataset {
    std::int64_t size() const override { return 5; }
    nn::Batch get(std::int64_t i) const override {
      return {autodiff::full({1}, static_cast<double>(i)), autodiff::full({}, static_cast<double>(i), DType::int64)};
    }
  };
  nn::DataLoader loader(std::make_shared<Plain>(), {.batch_size = 2});
  std::vector<double> seen;
  for (const nn::Batch& b : loader)
    for (const double v : b.inputs.to_vector())
      seen.push_back(v);
  BOOST_TEST((seen == std::vector<double>{0, 1, 2, 3, 4}));
}

BOOST_AUTO_TEST_CASE(loader_errors) {
  BOOST_CHECK_THROW(nn::DataLoader(numbered(5), {.batch_size = 0}), autodiff::Error);
  BOOST_CHECK_THROW(nn::TensorDataset(autodiff::zeros({3, 2}), autodiff::zeros({4})), autodiff::Error);
  BOOST_CHECK_THROW(numbered(3)->get(3), autodiff::Error);
}

BOOST_AUTO_TEST_CASE(synthetic_datasets) {
  const auto moons = nn::make_moons(200, 0.0, 1);
  BOOST_TEST(moons.size() == 200);
  const auto x = moons.inputs().to_vector();
  const auto y = moons.targets().data<std::int64_t>();
  for (std::size_t i = 0; i < 200; ++i) {
    // noise-free moons lie on unit circles centred at (0, 0) and (1, 0.5)
    const double cx = y[i] == 0 ? 0.0 : 1.0, cy = y[i] == 0 ? 0.0 : 0.5;
    BOOST_TEST(std::fabs(std::hypot(x[2 * i] - cx, x[2 * i + 1] - cy) - 1.0) < 1e-6);
  }
  const auto circles = nn::make_circles(100, 0.0, 0.5, 3);
  const auto cx = circles.inputs().to_vector();
  for (std::size_t i = 0; i < 100; ++i) {
    const double r = std::hypot(cx[2 * i], cx[2 * i + 1]);
    BOOST_TEST(std::fabs(r - (circles.targets().data<std::int64_t>()[i] == 1 ? 0.5 : 1.0)) < 1e-6);
  }
  const auto spirals = nn::make_spirals(90, 3, 0.1, 4);
  BOOST_TEST(spirals.size() == 90);
  BOOST_TEST(nn::make_moons(50, 0.1, 9).inputs().to_vector() == nn::make_moons(50, 0.1, 9).inputs().to_vector(),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(checkpoint_round_trip) {
  TempDir dir;
  autodiff::manual_seed(4);
  auto net = nn::mlp({3, 5, 2}, "tanh", DType::float64);
  nn::StateDict s = net->state_dict();
  s.emplace("labels", autodiff::from_vector(std::vector<std::int64_t>{1, 2, 3}, {3}));
  s.emplace("float32", autodiff::tensor({1.5f, -2.0f}));
  nn::save_state_dict(dir.path / "m.safetensors", s, {{"note", "hello"}});
  nn::Metadata meta;
  const nn::StateDict back = nn::load_state_dict(dir.path / "m.safetensors", &meta);
  BOOST_TEST(meta.at("note") == "hello");
  BOOST_TEST(back.size() == s.size());
  for (const auto& [k, t] : s) {
    BOOST_TEST((back.at(k).dtype() == t.dtype()));
    BOOST_TEST((back.at(k).shape() == t.shape()));
    BOOST_TEST(back.at(k).to_vector() == t.to_vector(), boost::test_tools::per_element());
  }
  // a truncated file is refused with the file's name
  const auto bytes = std::filesystem::file_size(dir.path / "m.safetensors");
  std::filesystem::resize_file(dir.path / "m.safetensors", bytes - 5);
  BOOST_CHECK_EXCEPTION(nn::load_state_dict(dir.path / "m.safetensors"), autodiff::Error, [](const autodiff::Error& e) {
    return std::string(e.what()).find("m.safetensors") != std::string::npos;
  });
}

BOOST_AUTO_TEST_CASE(resuming_from_a_checkpoint_is_bitwise_identical) {
  TempDir dir;
  auto data = std::make_shared<nn::TensorDataset>(nn::make_moons(96, 0.1, 5));
  auto run = [&](int from_epoch, int to_epoch, const std::filesystem::path* load, const std::filesystem::path* save) {
    autodiff::manual_seed(17);
    auto net = nn::mlp({2, 8, 2}, "tanh");
    nn::Adam opt(net->parameters(), {.lr = 0.01});
    if (load) {
      const nn::StateDict all = nn::load_state_dict(*load);
      nn::StateDict m, o;
      for (const auto& [k, v] : all)
        (k.rfind("m.", 0) == 0 ? m : o).emplace(k.substr(2), v);
      net->load_state_dict(m);
      opt.load_state_dict(o);
    }
    nn::DataLoader loader(data, {.batch_size = 16, .shuffle = true, .seed = 3});
    autodiff::Tape tape;
    for (int e = from_epoch; e < to_epoch; ++e) {
      loader.set_epoch(e);
      for (const nn::Batch& b : loader) {
        tape.reset();
        opt.zero_grad();
        nn::cross_entropy((*net)(b.inputs), b.targets).backward();
        opt.step();
      }
    }
    if (save) {
      nn::StateDict all;
      for (auto& [k, v] : net->state_dict())
        all.emplace("m." + k, v);
      for (auto& [k, v] : opt.state_dict())
        all.emplace("o." + k, v);
      nn::save_state_dict(*save, all);
    }
    std::vector<double> flat;
    for (const Tensor& p : net->parameters())
      for (double v : p.to_vector())
        flat.push_back(v);
    return flat;
  };
  const auto straight = run(0, 6, nullptr, nullptr);
  const auto ckpt = dir.path / "ckpt.safetensors";
  run(0, 3, nullptr, &ckpt);
  const auto resumed = run(3, 6, &ckpt, nullptr);
  BOOST_TEST(resumed == straight, boost::test_tools::per_element());
}

// Dropout draws from the generator, and schedulers count epochs: a run stopped mid-epoch resumes
// bitwise only when the checkpoint holds model, optimizer, schedulers, generator and position.
BOOST_AUTO_TEST_CASE(resuming_with_dropout_and_schedulers_is_bitwise_identical) {
  TempDir dir;
  auto data = std::make_shared<nn::TensorDataset>(nn::make_moons(96, 0.1, 5)); // 6 batches of 16
  constexpr std::int64_t total = 20, half = 9;                                 // stop mid-epoch
  auto run = [&](std::int64_t from, std::int64_t to, const std::filesystem::path* load,
                 const std::filesystem::path* save) {
    autodiff::manual_seed(17);
    std::shared_ptr<nn::Sequential> net(
        new nn::Sequential{std::make_shared<nn::Linear>(2, 16), std::make_shared<nn::ReLU>(),
                           std::make_shared<nn::Dropout>(0.3), std::make_shared<nn::Linear>(16, 2)});
    nn::Adam opt(net->parameters(), {.lr = 0.02});
    nn::StepLR sched(opt, 2, 0.5);
    nn::ReduceLROnPlateau plateau(opt, {.factor = 0.5, .patience = 0});
    std::int64_t position = from;
    if (load) {
      const nn::StateDict all = nn::load_state_dict(*load);
      std::map<std::string, nn::StateDict> parts;
      for (const auto& [k, v] : all)
        parts[k.substr(0, k.find('.'))].emplace(k.substr(k.find('.') + 1), v);
      net->load_state_dict(parts.at("model"));
      opt.load_state_dict(parts.at("optimizer"));
      sched.load_state_dict(parts.at("scheduler"));
      plateau.load_state_dict(parts.at("plateau"));
      autodiff::set_rng_state(parts.at("rng").at("state"));
      position = static_cast<std::int64_t>(parts.at("loader").at("step").item());
      BOOST_TEST(position == from);
    }
    nn::DataLoader loader(data, {.batch_size = 16, .shuffle = true, .seed = 3});
    autodiff::Tape tape;
    const std::int64_t per_epoch = loader.batches_per_epoch();
    while (position < to) {
      const std::int64_t epoch = position / per_epoch;
      loader.set_epoch(epoch);
      std::int64_t i = 0;
      double last_loss = 0; // the plateau's metric: the epoch's last batch, known after a resume too
      for (const nn::Batch& b : loader) {
        if (i++ < position % per_epoch) continue; // already done before the checkpoint
        if (position == to) break;
        tape.reset();
        opt.zero_grad();
        const Tensor loss = nn::cross_entropy((*net)(b.inputs), b.targets);
        last_loss = loss.item();
        loss.backward();
        opt.step();
        ++position;
      }
      if (position % per_epoch == 0) {
        sched.step();
        plateau.step(last_loss);
      }
    }
    if (save) {
      nn::StateDict all;
      for (auto& [k, v] : net->state_dict())
        all.emplace("model." + k, v);
      for (auto& [k, v] : opt.state_dict())
        all.emplace("optimizer." + k, v);
      for (auto& [k, v] : sched.state_dict())
        all.emplace("scheduler." + k, v);
      for (auto& [k, v] : plateau.state_dict())
        all.emplace("plateau." + k, v);
      all.emplace("rng.state", autodiff::get_rng_state());
      all.emplace("loader.step", autodiff::full({}, static_cast<double>(position), DType::float64));
      nn::save_state_dict(*save, all);
    }
    std::vector<double> flat;
    for (const Tensor& p : net->parameters())
      for (double v : p.to_vector())
        flat.push_back(v);
    flat.push_back(opt.lr());
    return flat;
  };
  const auto straight = run(0, total, nullptr, nullptr);
  const auto ckpt = dir.path / "ckpt.safetensors";
  run(0, half, nullptr, &ckpt);
  const auto resumed = run(half, total, &ckpt, nullptr);
  BOOST_TEST(resumed == straight, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(generator_state_round_trips_and_is_checked) {
  autodiff::manual_seed(5);
  const Tensor state = autodiff::get_rng_state();
  const auto a = autodiff::rand({7}, DType::float64).to_vector();
  autodiff::set_rng_state(state);
  BOOST_TEST(autodiff::rand({7}, DType::float64).to_vector() == a, boost::test_tools::per_element());
  const Tensor after = autodiff::get_rng_state();
  const auto next = autodiff::rand({3}, DType::float64).to_vector();
  auto refused = [&](const Tensor& bad) {
    autodiff::set_rng_state(after);
    BOOST_CHECK_THROW(autodiff::set_rng_state(bad), autodiff::Error);
    // the generator is unchanged
    BOOST_TEST(autodiff::rand({3}, DType::float64).to_vector() == next, boost::test_tools::per_element());
  };
  refused(Tensor());
  refused(state.to(DType::float64));
  refused(state.reshape({1, state.numel()}));
  refused(autodiff::zeros({state.numel()}, DType::int64));
  std::vector<std::int64_t> words(state.data<std::int64_t>().begin(), state.data<std::int64_t>().end());
  words.pop_back();
  refused(autodiff::from_vector(words, {static_cast<std::int64_t>(words.size())}));
  if (static_cast<std::size_t>(state.numel()) > std::mt19937_64::state_size) { // libstdc++: the position
    std::vector<std::int64_t> past(state.data<std::int64_t>().begin(), state.data<std::int64_t>().end());
    past.back() = 1 << 20;
    refused(autodiff::from_vector(past, {state.numel()}));
  }
}

BOOST_AUTO_TEST_CASE(scheduler_state_dicts_are_checked) {
  Tensor w = autodiff::tensor({1.0}, DType::float64).requires_grad(true);
  nn::SGD opt({w}, {.lr = 0.1});
  nn::StepLR sched(opt, 2);
  sched.step();
  const nn::StateDict good = sched.state_dict();
  BOOST_TEST(good.at("last_epoch").item() == 1);
  BOOST_TEST(good.at("base_lrs.0").item() == 0.1);
  auto num = [](double v) { return autodiff::full({}, v, DType::float64); };
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  const std::vector<std::pair<std::string, Tensor>> bad{
      {"last_epoch", num(2.5)}, {"last_epoch", num(1e30)}, {"last_epoch", num(-1)},
      {"last_epoch", num(inf)}, {"base_lrs.0", num(nan)},  {"base_lrs.0", num(-1)},
      {"base_lrs.1", num(0.1)}, {"bogus", num(0)},         {"last_epoch", Tensor()},
  };
  for (const auto& [key, value] : bad) {
    nn::StateDict s = good;
    if (value.defined())
      s[key] = value;
    else
      s.erase(key);
    nn::StepLR other(opt, 2);
    BOOST_TEST_CONTEXT(key) {
      // &key = key: clang 14 cannot capture a structured binding.
      BOOST_CHECK_EXCEPTION(other.load_state_dict(s), autodiff::Error, [&key = key](const autodiff::Error& e) {
        return std::string(e.what()).find("'" + key + "'") != std::string::npos;
      });
      BOOST_TEST(other.last_epoch() == 0);
    }
  }
  nn::StepLR other(opt, 2);
  other.load_state_dict(good);
  BOOST_TEST(other.last_epoch() == 1);

  nn::ReduceLROnPlateau plateau(opt, {.patience = 1, .cooldown = 2});
  plateau.step(1.0);
  const nn::StateDict p = plateau.state_dict();
  BOOST_TEST(p.at("best").item() == 1.0);
  for (const auto& [key, value] : std::vector<std::pair<std::string, Tensor>>{{"best", num(nan)},
                                                                              {"num_bad_epochs", num(0.5)},
                                                                              {"cooldown_counter", num(3)},
                                                                              {"cooldown_counter", num(-1)},
                                                                              {"extra", num(1)}}) {
    nn::StateDict s = p;
    s[key] = value;
    BOOST_TEST_CONTEXT(key) { BOOST_CHECK_THROW(plateau.load_state_dict(s), autodiff::Error); }
  }
  BOOST_TEST(plateau.state_dict().at("best").item() == 1.0);
}

BOOST_AUTO_TEST_SUITE_END()
