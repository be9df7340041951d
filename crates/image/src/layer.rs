//! Layers: safe unpacking of a layer tar into a directory (every path resolved inside the root,
//! whiteouts converted to overlay's form), and the reverse (an overlay upper dir to a tar).
