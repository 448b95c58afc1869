// LeNet-5 forward pass in plain C++17: the outline's section 7.2, fixed.
//
// Chapter: notebooks/07_from_scratch.  Built and run by cnnlib.scratch.run_cpp:
//
//     g++ -O2 -std=c++17 -o lenet5 lenet5.cpp
//     ./lenet5 input.bin output.bin [repeats]
//
// What changed from the outline:
//   * Tensor has a const operator() beside the non-const one, so every
//     forward(const Tensor&) compiles (the printed code does not);
//   * weights are read from a file instead of staying zero-initialised;
//   * MaxPool2D takes a padding (padded cells never win: they count as -inf);
//   * Dense stores its weight as (out, in), like cnnlib and PyTorch;
//   * the file's shapes are checked, and every error ends with a message.
// Still missing, on purpose: backward passes and training.
//
// input.bin, little-endian: the 8 bytes "LENET5\0\0", then 11 tensors, each
// an int32 rank, int32 dims, float32 data: conv1.weight (6,1,5,5), conv1.bias
// (6), conv2.weight (16,6,5,5), conv2.bias (16), fc1.weight (120,400),
// fc1.bias (120), fc2.weight (84,120), fc2.bias (84), fc3.weight (10,84),
// fc3.bias (10), and the input x (N,1,28,28), already normalised.
// output.bin: logits (N,10) then softmax probabilities (N,10), float32.
// stdout: one line "forward_ms <median milliseconds for the whole batch>".

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <vector>

class Tensor {
public:
    std::vector<int> shape;
    std::vector<float> data;

    Tensor() = default;
    explicit Tensor(const std::vector<int>& shape_) : shape(shape_) {
        size_t size = 1;
        for (int dim : shape) size *= dim;
        data.assign(size, 0.0f);
    }

    // Row-major offset of a multi-index; shared by both overloads below.
    size_t offset(std::initializer_list<int> indices) const {
        size_t index = 0;
        const int* i = indices.begin();
        for (size_t d = 0; d < shape.size(); ++d)
            index = index * shape[d] + i[d];
        return index;
    }
    float& operator()(std::initializer_list<int> indices) {
        return data[offset(indices)];
    }
    // The fix: reading through a const Tensor& needs a const overload.
    float operator()(std::initializer_list<int> indices) const {
        return data[offset(indices)];
    }
};

class Conv2D {
public:
    Tensor weights;  // (out_ch, in_ch, k, k)
    Tensor bias;     // (out_ch)
    int stride, padding;

    Conv2D(Tensor w, Tensor b, int stride_ = 1, int padding_ = 0)
        : weights(std::move(w)), bias(std::move(b)), stride(stride_), padding(padding_) {}

    Tensor forward(const Tensor& x) const {
        int batch = x.shape[0], in_ch = x.shape[1], in_h = x.shape[2], in_w = x.shape[3];
        int out_ch = weights.shape[0], k_h = weights.shape[2], k_w = weights.shape[3];
        int out_h = (in_h + 2 * padding - k_h) / stride + 1;
        int out_w = (in_w + 2 * padding - k_w) / stride + 1;
        Tensor output({batch, out_ch, out_h, out_w});
        for (int b = 0; b < batch; ++b)
            for (int oc = 0; oc < out_ch; ++oc)
                for (int oh = 0; oh < out_h; ++oh)
                    for (int ow = 0; ow < out_w; ++ow) {
                        float sum = bias({oc});
                        int h0 = oh * stride - padding, w0 = ow * stride - padding;
                        for (int ic = 0; ic < in_ch; ++ic)
                            for (int kh = 0; kh < k_h; ++kh)
                                for (int kw = 0; kw < k_w; ++kw) {
                                    int h = h0 + kh, w = w0 + kw;
                                    if (h >= 0 && h < in_h && w >= 0 && w < in_w)  // zero padding
                                        sum += x({b, ic, h, w}) * weights({oc, ic, kh, kw});
                                }
                        output({b, oc, oh, ow}) = sum;
                    }
        return output;
    }
};

class MaxPool2D {
public:
    int size, stride, padding;

    MaxPool2D(int size_, int stride_ = 0, int padding_ = 0)
        : size(size_), stride(stride_ == 0 ? size_ : stride_), padding(padding_) {}

    Tensor forward(const Tensor& x) const {
        int batch = x.shape[0], ch = x.shape[1], in_h = x.shape[2], in_w = x.shape[3];
        int out_h = (in_h + 2 * padding - size) / stride + 1;
        int out_w = (in_w + 2 * padding - size) / stride + 1;
        Tensor output({batch, ch, out_h, out_w});
        for (int b = 0; b < batch; ++b)
            for (int c = 0; c < ch; ++c)
                for (int oh = 0; oh < out_h; ++oh)
                    for (int ow = 0; ow < out_w; ++ow) {
                        float max_val = -INFINITY;  // padded cells are skipped: they act as -inf
                        int h0 = oh * stride - padding, w0 = ow * stride - padding;
                        for (int kh = 0; kh < size; ++kh)
                            for (int kw = 0; kw < size; ++kw) {
                                int h = h0 + kh, w = w0 + kw;
                                if (h >= 0 && h < in_h && w >= 0 && w < in_w)
                                    max_val = std::max(max_val, x({b, c, h, w}));
                            }
                        output({b, c, oh, ow}) = max_val;
                    }
        return output;
    }
};

class ReLU {
public:
    Tensor forward(const Tensor& x) const {
        Tensor output(x.shape);
        for (size_t i = 0; i < x.data.size(); ++i) output.data[i] = std::max(0.0f, x.data[i]);
        return output;
    }
};

class Flatten {
public:
    Tensor forward(const Tensor& x) const {
        int features = 1;
        for (size_t i = 1; i < x.shape.size(); ++i) features *= x.shape[i];
        Tensor output({x.shape[0], features});
        output.data = x.data;  // NCHW is row-major: flattening is a reshape
        return output;
    }
};

class Dense {
public:
    Tensor weights;  // (out, in), as in cnnlib and PyTorch
    Tensor bias;     // (out)

    Dense(Tensor w, Tensor b) : weights(std::move(w)), bias(std::move(b)) {}

    Tensor forward(const Tensor& x) const {
        int batch = x.shape[0], n_out = weights.shape[0], n_in = weights.shape[1];
        Tensor output({batch, n_out});
        for (int b = 0; b < batch; ++b)
            for (int o = 0; o < n_out; ++o) {
                float sum = bias({o});
                for (int i = 0; i < n_in; ++i) sum += x({b, i}) * weights({o, i});
                output({b, o}) = sum;
            }
        return output;
    }
};

class Softmax {
public:
    Tensor forward(const Tensor& x) const {
        Tensor output(x.shape);
        int classes = x.shape[1];
        for (int b = 0; b < x.shape[0]; ++b) {
            float max_val = x({b, 0});
            for (int c = 1; c < classes; ++c) max_val = std::max(max_val, x({b, c}));
            float sum = 0.0f;
            for (int c = 0; c < classes; ++c) {
                output({b, c}) = std::exp(x({b, c}) - max_val);
                sum += output({b, c});
            }
            for (int c = 0; c < classes; ++c) output({b, c}) /= sum;
        }
        return output;
    }
};

// --- reading the input file -------------------------------------------------

static void fail(const std::string& message) {
    std::fprintf(stderr, "lenet5: %s\n", message.c_str());
    std::exit(1);
}

static std::string shape_str(const std::vector<int>& shape) {
    std::string s = "(";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + ")";
}

// Read one tensor and check its shape; a dim of -1 in `expected` matches any size >= 1.
static Tensor read_tensor(std::FILE* f, const char* name, const std::vector<int>& expected) {
    int32_t rank = 0;
    if (std::fread(&rank, sizeof rank, 1, f) != 1 || rank < 1 || rank > 4)
        fail(std::string("cannot read the rank of ") + name);
    std::vector<int> shape(rank);
    for (int& d : shape) {
        int32_t dim = 0;
        if (std::fread(&dim, sizeof dim, 1, f) != 1 || dim < 1) fail(std::string("bad dims for ") + name);
        d = dim;
    }
    bool ok = shape.size() == expected.size();
    for (size_t i = 0; ok && i < shape.size(); ++i) ok = expected[i] == -1 || expected[i] == shape[i];
    if (!ok) fail(std::string(name) + ": expected shape " + shape_str(expected) + ", got " + shape_str(shape));
    Tensor t(shape);
    if (std::fread(t.data.data(), sizeof(float), t.data.size(), f) != t.data.size())
        fail(std::string("file ends inside ") + name);
    return t;
}

int main(int argc, char** argv) {
    if (argc < 3) fail("usage: lenet5 input.bin output.bin [repeats]");
    int repeats = argc > 3 ? std::atoi(argv[3]) : 5;
    if (repeats < 1) fail("repeats must be a positive integer");
    std::FILE* in = std::fopen(argv[1], "rb");
    if (!in) fail(std::string("cannot open ") + argv[1]);
    char magic[8];
    if (std::fread(magic, 1, 8, in) != 8 || std::memcmp(magic, "LENET5\0\0", 8) != 0)
        fail("not a LeNet-5 input file (bad magic)");
    Tensor w1 = read_tensor(in, "conv1.weight", {6, 1, 5, 5}), b1 = read_tensor(in, "conv1.bias", {6});
    Tensor w2 = read_tensor(in, "conv2.weight", {16, 6, 5, 5}), b2 = read_tensor(in, "conv2.bias", {16});
    Tensor w3 = read_tensor(in, "fc1.weight", {120, 400}), b3 = read_tensor(in, "fc1.bias", {120});
    Tensor w4 = read_tensor(in, "fc2.weight", {84, 120}), b4 = read_tensor(in, "fc2.bias", {84});
    Tensor w5 = read_tensor(in, "fc3.weight", {10, 84}), b5 = read_tensor(in, "fc3.bias", {10});
    Tensor x = read_tensor(in, "x", {-1, 1, 28, 28});
    std::fclose(in);

    // LeNet-5 as in cnnlib.zoo.lenet5: padding 2 on conv1 makes 28x28 act like 32x32.
    Conv2D conv1(w1, b1, 1, 2), conv2(w2, b2);
    MaxPool2D pool(2);
    ReLU relu;
    Flatten flatten;
    Dense fc1(w3, b3), fc2(w4, b4), fc3(w5, b5);
    auto forward = [&](const Tensor& input) {
        Tensor h = pool.forward(relu.forward(conv1.forward(input)));
        h = pool.forward(relu.forward(conv2.forward(h)));
        h = relu.forward(fc1.forward(flatten.forward(h)));
        return fc3.forward(relu.forward(fc2.forward(h)));
    };

    Tensor logits;
    std::vector<double> ms;
    for (int r = 0; r < repeats; ++r) {
        auto t0 = std::chrono::steady_clock::now();
        logits = forward(x);
        auto t1 = std::chrono::steady_clock::now();
        ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    Tensor probs = Softmax().forward(logits);

    std::FILE* out = std::fopen(argv[2], "wb");
    if (!out) fail(std::string("cannot write ") + argv[2]);
    std::fwrite(logits.data.data(), sizeof(float), logits.data.size(), out);
    std::fwrite(probs.data.data(), sizeof(float), probs.data.size(), out);
    std::fclose(out);
    std::printf("forward_ms %.6f\n", ms[ms.size() / 2]);
    return 0;
}
