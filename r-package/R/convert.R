# The one conversion layer between R and Python (its Python half is fineclass/rbridge.py).
#
# reticulate's own conversion corrupts missing values (character NA -> "NA", logical NA -> TRUE,
# integer NA -> -2^31) and pandas results carry a stray `pandas.index` attribute. So data never
# travels as a data frame: each column goes as plain values plus an `is.na` mask and becomes an Arrow
# array on the Python side; results come back as filled-in values plus a null mask.

#' Convert an R data frame to a Python Arrow table, NA-safe
#'
#' Each column travels as its values plus an `is.na()` mask, and becomes an
#' Arrow array: character -> string, integer -> int32, double -> float64 (`NaN`
#' stays `NaN`, `NA` becomes null), logical -> bool, factor -> dictionary
#' (levels kept, ordered flag kept), Date -> date32, POSIXct -> timestamp (us),
#' list columns of vectors -> list arrays, data frame columns -> structs.
#' [arrow_to_r()] brings a table back; the round trip is exact.
#'
#' Columns of other classes are converted where R has a clear equivalent:
#' `glue` strings become character, `haven_labelled` values (from a `.dta`,
#' `.sav` or `.sas7bdat` file read with haven) become factors with their value
#' labels as levels, `integer64` (bit64, e.g. tweet ids read by
#' `data.table::fread()`) becomes character, `POSIXlt` becomes `POSIXct`.
#' Any other class is an error naming the column; the verbs of this package
#' send only the columns a call needs, so such a column elsewhere in the data
#' frame does no harm.
#'
#' @param x A data frame or tibble.
#' @param arg The name of the argument `x` came from, for error messages.
#' @return A Python `pyarrow.Table` (a reticulate object).
#' @examplesIf ft_available()
#' df <- data.frame(text = c("a", NA), n = c(1L, NA))
#' tbl <- r_to_arrow(df)
#' identical(arrow_to_r(tbl), tibble::as_tibble(df))
#' @export
r_to_arrow <- function(x, arg = "data") {
  if (!is.data.frame(x)) {
    stop(fineclass_error(sprintf("`%s` must be a data frame; got %s.", arg, class(x)[1]), arg))
  }
  names <- names(x)
  if (is.null(names) || anyNA(names) || any(!nzchar(names))) {
    stop(fineclass_error(sprintf("every column of `%s` needs a name.", arg), arg))
  }
  specs <- lapply(seq_along(x), function(j) column_spec(x[[j]], names[[j]], arg))
  py_invoke(rb()$table_from_r, list(as.list(names), specs, nrow(x), arg), convert = FALSE, call = NULL)
}

#' Convert a Python Arrow table (or any fineclass result) to R
#'
#' The inverse of [r_to_arrow()]: nulls become `NA`, dictionary columns become
#' factors, date32 becomes Date, timestamps become POSIXct, list columns become
#' list columns. 64-bit integers come back as integers when every value fits,
#' as doubles otherwise. Tables become tibbles, with no `pandas.index`
#' attribute.
#'
#' @param x A Python object: a `pyarrow.Table`, a pandas or polars data
#'   frame, or a result holding tables (a dict, an object with `to_dict()`).
#' @param unnest The name of a list column to unnest into long rows (see
#'   [ft_classify()]), or `NULL`.
#' @return A tibble, or a list of them.
#' @inherit r_to_arrow examples
#' @export
arrow_to_r <- function(x, unnest = NULL) {
  if (!inherits(x, "python.builtin.object")) {
    return(x)
  }
  value <- reticulate::py_to_r(rb()$export(x))
  from_py(value, unnest = unnest)
}

# Rebuild what rbridge.export() produced: marked tables and columns become data frames and vectors.
from_py <- function(x, unnest = NULL) {
  if (is.list(x) && !is.data.frame(x)) {
    mark <- x[["__fineclass__"]]
    if (identical(mark, "table")) {
      return(build_table(x, unnest = unnest))
    }
    if (identical(mark, "column")) {
      return(build_column(x$column))
    }
    out <- lapply(x, from_py)
    attributes(out) <- attributes(x)
    return(out)
  }
  if (is.array(x) && length(dim(x)) == 1) {
    dim(x) <- NULL
  }
  x
}

# ------------------------------------------------------------------------------------ R -> Python

column_spec <- function(x, name = "x", arg = "data") {
  x <- coerce_column(x)
  if (is.factor(x)) {
    codes <- as.integer(unclass(x)) - 1L
    return(list(
      kind = "factor", codes = vec(codes), mask = na_mask(codes),
      levels = character_spec(levels(x), name, arg), ordered = is.ordered(x)
    ))
  }
  if (inherits(x, "Date")) {
    v <- as.double(unclass(x))
    return(list(kind = "Date", values = vec(v), mask = na_mask(v)))
  }
  if (inherits(x, "POSIXct")) {
    v <- as.double(unclass(x))
    tz <- attr(x, "tzone")[1] %||% ""
    return(list(kind = "POSIXct", values = vec(v), mask = na_mask(v), tz = if (is.na(tz)) "" else tz))
  }
  if (is.data.frame(x)) {
    return(list(
      kind = "struct", names = as.list(names(x)), nrow = nrow(x),
      fields = lapply(seq_along(x), function(j) column_spec(x[[j]], paste0(name, "$", names(x)[j]), arg))
    ))
  }
  if (is.list(x) && (is.null(oldClass(x)) || inherits(x, c("AsIs", "vctrs_list_of")))) {
    return(list_spec(unclass(x), name, arg))
  }
  known <- is.null(oldClass(x)) || identical(oldClass(x), "AsIs")
  if (known && is.character(x)) {
    return(character_spec(x, name, arg))
  }
  if (known && is.logical(x)) {
    return(list(kind = "logical", values = vec(x), mask = na_mask(x)))
  }
  if (known && is.integer(x)) {
    return(list(kind = "integer", values = vec(x), mask = na_mask(x)))
  }
  if (known && is.double(x)) {
    # NaN is a value in Arrow too: only NA becomes null
    mask <- if (anyNA(x)) is.na(x) & !is.nan(x) else NULL
    return(list(kind = "double", values = vec(x), mask = if (any(mask)) vec(mask) else NULL))
  }
  stop(fineclass_error(sprintf(
    paste0(
      "column `%s` in `%s` is of class %s, which fineclass cannot send to Python. It sends ",
      "character, integer, double, logical, factor, Date, POSIXct and list columns: convert it, ",
      "e.g. with as.character() or as.numeric()."
    ), name, arg, paste(class(x), collapse = "/")
  ), argument = arg))
}

# Column classes with a clear R equivalent that Arrow can carry.
coerce_column <- function(x) {
  if (inherits(x, "glue")) {
    return(as.character(unclass(x)))
  }
  if (inherits(x, "haven_labelled")) {
    return(labelled_to_factor(x))
  }
  if (inherits(x, "integer64")) {
    if (!requireNamespace("bit64", quietly = TRUE)) {
      stop(fineclass_error("an integer64 column needs the bit64 package to be read: install.packages(\"bit64\")."))
    }
    return(as.character(x))  # bit64's method, registered with its namespace
  }
  if (inherits(x, "POSIXlt")) {
    return(as.POSIXct(x))
  }
  x
}

# haven's labelled vectors as a factor: value labels where there are some, the values elsewhere, in the
# order of the values (as haven::as_factor(levels = "default") does)
labelled_to_factor <- function(x) {
  labels <- attr(x, "labels", exact = TRUE)
  values <- unclass(x)
  attributes(values) <- NULL
  known <- sort(unique(c(values[!is.na(values)], unname(labels))))
  shown <- as.character(known)
  if (length(labels)) {
    hit <- match(known, unname(labels))
    shown[!is.na(hit)] <- names(labels)[hit[!is.na(hit)]]
  }
  factor(shown[match(values, known)], levels = unique(shown))
}

# a plain 1-d array: reticulate turns it into a numpy array (a bare vector would become a list)
vec <- function(x) {
  x <- as.vector(x)
  dim(x) <- length(x)
  x
}

na_mask <- function(x) {
  if (anyNA(x)) vec(is.na(x)) else NULL
}

# Text travels as R's writeBin() output (each value's UTF-8 bytes and a NUL) in one raw vector:
# Python finds the NULs and builds an Arrow string array without making a million Python objects.
# Python also checks that the bytes are valid UTF-8 and names the rows that are not.
character_spec <- function(x, name, arg) {
  x <- as.character(x)
  mask <- is.na(x)
  any_na <- any(mask)
  if (any_na) x[mask] <- ""
  x <- enc2utf8(x)
  spec <- list(kind = "character", n = length(x), mask = if (any_na) vec(mask) else NULL)
  nbytes <- nchar(x, type = "bytes")
  if (isTRUE(l10n_info()[["UTF-8"]])) {
    # writeBin() writes UTF-8 strings as they are in a UTF-8 locale (elsewhere it would translate them)
    groups <- byte_groups(nbytes + 1)
    spec$raw <- if (is.null(groups)) {
      writeBin(x, raw())
    } else {
      unname(lapply(split(x, groups), writeBin, con = raw()))
    }
  } else {
    bytes_marked <- Encoding(x) == "bytes"
    if (any(bytes_marked)) Encoding(x)[bytes_marked] <- "UTF-8"
    groups <- byte_groups(nbytes)
    spec$chunks <- if (is.null(groups)) paste(x, collapse = "") else unname(lapply(split(x, groups), paste, collapse = ""))
    spec$nbytes <- vec(nbytes)
  }
  spec
}

# R's raw vectors and strings hold at most 2^31 - 1 bytes: NULL when one piece will do, else piece numbers
byte_groups <- function(nbytes, limit = 2^30) {
  ends <- cumsum(as.double(nbytes))
  if (!length(ends) || ends[length(ends)] < limit) {
    return(NULL)
  }
  floor(ends / limit)
}

read_strings <- function(raw, n) {
  v <- readBin(raw, "character", n = as.integer(n))
  if (!isTRUE(l10n_info()[["UTF-8"]])) Encoding(v) <- "UTF-8"
  v
}

list_spec <- function(x, name, arg) {
  is_null <- vapply(x, is.null, logical(1))
  items <- x[!is_null]
  frames <- vapply(items, is.data.frame, logical(1))
  if (length(items) && all(frames)) {
    lengths <- vapply(x, NROW, integer(1))
    cols <- names(items[[1]])
    same <- vapply(items, function(d) identical(names(d), cols), logical(1))
    if (!all(same)) {
      stop(fineclass_error(sprintf(
        "the data frames in list column `%s` of `%s` do not all have the columns %s.",
        name, arg, paste(cols, collapse = ", ")
      ), argument = arg))
    }
    child <- lapply(cols, function(col) do.call(c, unname(lapply(items, `[[`, col))))
    names(child) <- cols
    child <- structure(child, class = "data.frame", row.names = c(NA_integer_, -sum(lengths)))
  } else {
    atomic <- vapply(items, function(v) is.atomic(v) && is.null(dim(v)), logical(1))
    if (!all(atomic)) {
      stop(fineclass_error(sprintf(
        paste0(
          "list column `%s` in `%s` must hold vectors (or data frames) in every row; row %d holds ",
          "a %s."
        ), name, arg, which(!is_null)[which(!atomic)[1]], class(items[[which(!atomic)[1]]])[1]
      ), argument = arg))
    }
    lengths <- lengths(x)
    child <- if (length(items)) do.call(c, unname(items)) else logical(0)
  }
  list(
    kind = "list", lengths = vec(as.integer(lengths)), mask = if (any(is_null)) vec(is_null) else NULL,
    child = column_spec(child, name, arg)
  )
}

# ------------------------------------------------------------------------------------ Python -> R

build_table <- function(t, unnest = NULL) {
  n <- as.integer(t$nrow)
  names <- as.character(unlist(t$names))
  cols <- lapply(t$columns, build_column, n = n, split = FALSE)
  names(cols) <- names
  if (!is.null(unnest)) {
    return(unnest_column(cols, unnest, n))
  }
  cols <- lapply(cols, function(col) if (inherits(col, "fc_list")) split_list(col) else col)
  new_frame(cols, n)
}

new_frame <- function(cols, n) {
  tibble::new_tibble(cols, nrow = n)
}

build_column <- function(s, n = NULL, split = TRUE) {
  mask <- s$mask
  if (!is.null(mask)) mask <- as.logical(mask)
  fill <- function(v, na) {
    if (!is.null(mask)) v[mask] <- na
    v
  }
  out <- switch(s$kind,
    character = fill(if (is.null(s$raw)) as.character(s$values) else read_strings(s$raw, s$n), NA_character_),
    integer = fill(as.integer(s$values), NA_integer_),
    double = fill(as.double(s$values), NA_real_),
    logical = fill(as.logical(s$values), NA),
    Date = structure(fill(as.double(s$values), NA_real_), class = "Date"),
    POSIXct = structure(fill(as.double(s$values), NA_real_),
      class = c("POSIXct", "POSIXt"), tzone = s$tz %||% ""
    ),
    factor = build_factor(s, mask),
    null = rep(NA, as.integer(s$n)),
    list = structure(list(
      child = build_column(s$child, split = split),
      lengths = as.integer(s$lengths), mask = mask
    ), class = "fc_list"),
    struct = {
      fields <- lapply(s$fields, build_column, split = split)
      names(fields) <- as.character(unlist(s$names))
      new_frame(fields, as.integer(s$nrow))
    },
    stop("unknown column kind from Python: ", s$kind)
  )
  if (split && inherits(out, "fc_list")) out <- split_list(out)
  out
}

build_factor <- function(s, mask) {
  levels <- build_column(s$levels)
  codes <- as.integer(s$codes) + 1L
  if (!is.null(mask)) codes[mask] <- NA_integer_
  if (anyDuplicated(levels) || anyNA(levels)) {
    return(factor(levels[codes], levels = unique(levels[!is.na(levels)]), ordered = isTRUE(s$ordered)))
  }
  structure(codes, levels = levels, class = if (isTRUE(s$ordered)) c("ordered", "factor") else "factor")
}

# a list column: one vector (or data frame) per row, NULL where the row is null
split_list <- function(col) {
  n <- length(col$lengths)
  child <- col$child
  if (inherits(child, "fc_list")) child <- split_list(child)
  groups <- factor(rep.int(seq_len(n), col$lengths), levels = seq_len(n))
  out <- if (is.data.frame(child)) {
    lapply(split(seq_len(nrow(child)), groups), function(i) child[i, , drop = FALSE])
  } else {
    split(child, groups)
  }
  names(out) <- NULL
  if (!is.null(col$mask)) out[col$mask] <- list(NULL)
  out
}

# long rows: one per value of the list column, with its row's id
unnest_column <- function(cols, unnest, n) {
  col <- cols[[unnest]]
  if (!inherits(col, "fc_list")) {
    stop(fineclass_error(sprintf("column `%s` is not a list column; it cannot be unnested.", unnest),
      argument = "long"
    ))
  }
  # like the core's to_long(): the id, then the label fields; per-document columns stay in the wide table
  keep <- intersect("id", names(cols))
  rows <- rep.int(seq_len(n), col$lengths)
  out <- lapply(cols[keep], function(v) v[rows])
  child <- col$child
  if (inherits(child, "fc_list")) child <- split_list(child)
  if (is.data.frame(child)) {
    out <- c(out, as.list(child))
  } else {
    out[[sub("s$", "", unnest)]] <- child
  }
  new_frame(out, length(rows))
}

# ------------------------------------------------------------------------------------ numbers

#' Whole numbers for Python
#'
#' R passes numbers as doubles (`3` is `3.0`); Python functions that count
#' (epochs, batch sizes, seeds, training sizes) want integers. This checks that
#' every value is a whole number and returns an integer vector, so that Python
#' receives `int`s.
#'
#' @param x A numeric vector (or `NULL`, returned as is).
#' @param arg The argument's name, for the error message.
#' @return An integer vector, or `NULL`.
#' @examples
#' as_py_int(c(100, 200))
#' try(as_py_int(2.5, "epochs"))
#' @export
as_py_int <- function(x, arg = deparse(substitute(x))) {
  if (is.null(x)) {
    return(NULL)
  }
  ok <- (is.numeric(x) || is.logical(x) && all(is.na(x))) && !anyNA(x) &&
    all(is.finite(x)) && all(x == round(x)) && all(abs(x) <= .Machine$integer.max)
  if (!ok) {
    shown <- paste(utils::head(format(x), 5), collapse = ", ")
    stop(fineclass_error(sprintf("`%s` must be whole numbers; got %s.", arg, shown), argument = arg))
  }
  as.integer(x)
}

# a vector that Python must receive as a list, even with one element
as_py_list <- function(x) {
  if (is.null(x) || is.list(x)) {
    return(x)
  }
  as.list(x)
}
