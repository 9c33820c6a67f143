# ft_export() to GGUF and ft_fidelity(), through the real core and llama.cpp, on a tiny model: a random
# 2-layer Llama with SmolLM2's tokenizer and chat template (llama.cpp's converter must recognise the
# tokenizer), fine-tuned by the generative method for a few LoRA steps, as tests/test_gguf.py does.

skip_if_no_gguf <- function() {
  skip_if_no_fineclass()
  testthat::skip_if_not(reticulate::py_module_available("llama_cpp"),
    "llama-cpp-python is not installed (scripts/setup.sh --with-gguf)")
  converter <- tryCatch({
    reticulate::import("fineclass.llamacpp.tools")$converter_dir()
    TRUE
  }, error = function(e) FALSE)
  testthat::skip_if_not(converter, "llama.cpp's converter is not installed (fineclass gguf install-converter)")
}

# the tiny model's folder, built once per session
tiny_smol <- local({
  folder <- NULL
  function() {
    if (is.null(folder)) {
      out <- file.path(tempfile("tiny-smol-"))
      dir.create(out)
      main <- reticulate::import_main(convert = FALSE)
      main$tiny_smol_out <- out
      reticulate::py_run_string(paste(
        "import torch",
        "from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM",
        "from fineclass.models import resolve",
        "tok = AutoTokenizer.from_pretrained(resolve('smollm2-135m'))",
        "torch.manual_seed(0)",
        "cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,",
        "    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,",
        "    bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=True,",
        "    initializer_range=0.2)",
        "LlamaForCausalLM(cfg).save_pretrained(tiny_smol_out)",
        "tok.save_pretrained(tiny_smol_out)",
        sep = "\n"
      ))
      folder <<- out
    }
    folder
  }
})

# the tiny model fine-tuned (a few LoRA steps) on the test reviews, keeping a validation split
tuned_smol <- local({
  cache <- NULL
  function() {
    if (is.null(cache)) {
      cache <<- suppressWarnings(ft_train(reviews(), text = "review", label = "sentiment", id = "doc",
        model = tiny_smol(), method = "generative",
        codebook = c(pos = "the reviewer likes the film", neg = "the reviewer dislikes it"),
        config = ft_config(lora_r = 4), epochs = 1, batch_size = 8, max_length = 48, validation = 0.25,
        seed = 0, quiet = TRUE))
    }
    cache
  }
})

# the tuned model exported to f32 and q8_0 without a check (data = NULL), once per session
exported <- local({
  dir <- NULL
  function() {
    if (is.null(dir)) {
      out <- file.path(tempfile("gguf-"), "deploy")
      suppressWarnings(ft_export(tuned_smol(), out, quant = c("f32", "q8_0"), threads = 2, quiet = TRUE))
      dir <<- out
    }
    dir
  }
})

test_that("ft_export writes one GGUF file and sidecar per quantization, and no check without data", {
  skip_if_no_gguf()
  dir <- exported()
  expect_setequal(list.files(dir), c("model-f32.gguf", "model-f32.json", "model-q8_0.gguf", "model-q8_0.json",
    "tokenizer"))
  # data = NULL means no check, although the model keeps a validation split (the core's default would use it)
  expect_false(file.exists(file.path(dir, "fidelity.json")))
  side <- jsonlite::read_json(file.path(dir, "model-q8_0.json"))
  expect_identical(side$quant, "q8_0")
  expect_identical(unlist(side$spec$classes), c("pos", "neg"))
  expect_lt(file.size(file.path(dir, "model-q8_0.gguf")), file.size(file.path(dir, "model-f32.gguf")))
})

test_that("an exported f32 file, loaded with ft_load, predicts as the torch model does", {
  skip_if_no_gguf()
  m <- tuned_smol()
  gguf <- ft_load(file.path(exported(), "model-f32.gguf"))
  expect_s3_class(gguf, "ft_model")
  docs <- reviews()
  ref <- predict(m, docs, text = "review", id = "doc")
  got <- predict(gguf, docs, text = "review", id = "doc")
  expect_identical(levels(got$label), c("pos", "neg"))
  expect_identical(got$label, ref$label)
  expect_equal(got$p_pos, ref$p_pos, tolerance = 1e-4)
})

test_that("ft_export with data runs the check and says so; its message can be silenced", {
  skip_if_no_gguf()
  out <- file.path(withr::local_tempdir(), "deploy")
  docs <- reviews()
  expect_message(
    res <- suppressWarnings(ft_export(tuned_smol(), out, quant = "q8_0", data = docs, text = "review",
      id = "doc", label = "sentiment", bootstrap = 50, threads = 2)),
    "Exported"
  )
  expect_identical(res, out)
  report <- jsonlite::read_json(file.path(out, "fidelity.json"))
  expect_identical(report$summary[[1]]$file, "model-q8_0.gguf")
  expect_identical(report$summary[[1]]$n, 24L)
  expect_identical(report$metric, "accuracy")
  expect_silent(suppressWarnings(ft_export(tuned_smol(), out, quant = "q8_0", overwrite = TRUE, quiet = TRUE)))
})

test_that("ft_fidelity returns a tibble of class ft_fidelity with flips, tidy and glance", {
  skip_if_no_gguf()
  m <- tuned_smol()
  docs <- reviews()
  report <- suppressWarnings(ft_fidelity(m, exported(), docs, text = "review", id = "doc", label = "sentiment",
    bootstrap = 100, threads = 2, quiet = TRUE))
  expect_s3_class(report, c("ft_fidelity", "tbl_df"))
  expect_identical(report$file, c("model-f32.gguf", "model-q8_0.gguf"))
  expect_identical(report$quant, c("f32", "q8_0"))
  expect_identical(report$n, c(24L, 24L))
  # f32 reproduces the torch model: every label the same
  expect_identical(report$agreement[1], 1)
  expect_identical(report$flipped[1], 0L)
  expect_equal(report$agreement, 1 - report$flipped / report$n)
  expect_true(all(report$agreement_lower <= report$agreement & report$agreement <= report$agreement_upper))
  # the metric against the human codes, the same as scoring the model's own predictions
  pred <- predict(m, docs, text = "review", id = "doc")
  expect_equal(report$reference, rep(mean(as.character(pred$label) == as.character(docs$sentiment)), 2))
  expect_equal(report$difference, report$exported - report$reference)
  expect_identical(attr(report, "metric"), "accuracy")

  flips <- attr(report, "flips")
  expect_s3_class(flips, "tbl_df")
  expect_identical(sum(flips$file == "model-q8_0.gguf"), report$flipped[2])
  for (col in c("label_reference", "label_exported", "truth")) {
    expect_s3_class(flips[[col]], "factor")
    expect_identical(levels(flips[[col]]), c("pos", "neg"))  # the model's classes, in its order
  }
  expect_identical(tidy(report, what = "flips"), flips)

  out <- paste(capture.output(print(report)), collapse = "\n")
  expect_match(out, "<ft_fidelity> 2 exported files against the reference, 24 documents \\(metric: accuracy")
  expect_match(out, "model-q8_0.gguf", fixed = TRUE)
  expect_match(out, "difference")

  td <- tidy(report)
  expect_identical(names(td), c("file", "quant", "n", "agreement", "agreement.low", "agreement.high", "flipped",
    "metric", "reference", "exported", "estimate", "conf.low", "conf.high", "p.value"))
  expect_equal(td$estimate, report$difference)
  expect_equal(td$conf.low, report$lower)
  gl <- glance(report)
  expect_identical(nrow(gl), 1L)
  expect_identical(gl$files, 2L)
  expect_identical(gl$n, 24L)
  expect_equal(gl$min_agreement, min(report$agreement))
  expect_identical(gl$flipped, sum(report$flipped))
})

test_that("ft_fidelity takes files, loaded GGUF models and a saved model's folder", {
  skip_if_no_gguf()
  m <- tuned_smol()
  saved <- withr::local_tempdir()
  ft_save(m, saved, overwrite = TRUE)
  q8 <- file.path(exported(), "model-q8_0.gguf")
  docs <- reviews()[1:8, ]
  by_file <- suppressWarnings(ft_fidelity(saved, q8, docs, text = "review", id = "doc", bootstrap = 0,
    quiet = TRUE))
  expect_identical(by_file$file, "model-q8_0.gguf")
  expect_identical(by_file$n, 8L)
  expect_true(is.na(attr(by_file, "metric")) || is.null(attr(by_file, "metric")))  # no human codes given
  loaded <- ft_fidelity(m, list(ft_load(q8)), docs, text = "review", id = "doc", bootstrap = 0, quiet = TRUE)
  expect_identical(loaded$agreement, by_file$agreement)
})

test_that("bad input to ft_export and ft_fidelity is an error naming the argument", {
  skip_if_no_gguf()
  m <- tuned_smol()
  err <- expect_error(ft_export(m, tempfile(), quant = "q3_nonsense", quiet = TRUE), class = "fineclass_error")
  expect_identical(err$argument, "quant")
  err <- expect_error(ft_export(m, tempfile(), format = "onnx"), class = "fineclass_error")
  expect_identical(err$argument, "format")
  err <- expect_error(ft_export(fitted_model(), tempfile(), quiet = TRUE), class = "fineclass_error")
  expect_match(conditionMessage(err), "generative")
  err <- expect_error(ft_export("not a model", tempfile()), class = "fineclass_error")
  expect_identical(err$argument, "model")
  err <- expect_error(ft_fidelity(m, exported()), class = "fineclass_error")
  expect_identical(err$argument, "data")
  err <- expect_error(ft_fidelity(m, exported(), reviews(), text = "nope"), class = "fineclass_error")
  expect_identical(err$argument, "text")
  err <- expect_error(ft_fidelity(m, 42, reviews(), text = "review", id = "doc"), class = "fineclass_error")
  expect_identical(err$argument, "against")
})
