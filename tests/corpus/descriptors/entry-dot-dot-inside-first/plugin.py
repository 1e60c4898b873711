raise RuntimeError('a hostile plugin must never be imported')
