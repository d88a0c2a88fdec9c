/* dashboard script: see issue #5 */
